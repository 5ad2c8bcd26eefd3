//! [`Material`]: how a structured case says what one PEM field holds. Starting from the
//! fixtures and editing their DER reaches the parsers and signature checks far more
//! often than random bytes would, while `Der` and `Text` keep every input reachable.

use crate::der;
use crate::fixtures::SIGNED;
use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{KeyPair, SigningKey};
use std::sync::OnceLock;

/// One PEM field of a bundle or a CSR.
#[derive(Arbitrary, Debug, Clone)]
pub enum Material {
    /// The empty string.
    Empty,
    /// A fixture, unchanged ([`crate::fixtures::pick`]).
    Fixture(u8),
    /// Several fixtures, one after the other (a leaf with extra certificates, a trust
    /// bundle of several roots).
    Fixtures(Vec<u8>),
    /// A fixture's first PEM block with its DER edited, armoured again under its label.
    Edited(u8, Vec<Edit>),
    /// A signed fixture ([`crate::fixtures::SIGNED`]) whose signed content is edited and
    /// signed again with the fixture's key, so the edit reaches what comes after the
    /// signature check.
    Resigned(u8, Vec<Edit>),
    /// Any DER under one of the labels the code looks for.
    Der(Label, Vec<u8>),
    /// Any text.
    Text(String),
}

/// An edit of DER bytes; positions wrap around the current length.
#[derive(Arbitrary, Debug, Clone)]
pub enum Edit {
    Xor { at: u16, mask: u8 },
    Set { at: u16, byte: u8 },
    Truncate { at: u16 },
    Insert { at: u16, bytes: Vec<u8> },
    Remove { at: u16, len: u8 },
}

/// PEM labels.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Label {
    Certificate,
    PrivateKey,
    CertificateRequest,
    EcPrivateKey,
    RsaPrivateKey,
}

impl Label {
    fn as_str(self) -> &'static str {
        match self {
            Label::Certificate => "CERTIFICATE",
            Label::PrivateKey => "PRIVATE KEY",
            Label::CertificateRequest => "CERTIFICATE REQUEST",
            Label::EcPrivateKey => "EC PRIVATE KEY",
            Label::RsaPrivateKey => "RSA PRIVATE KEY",
        }
    }
}

impl Material {
    /// The PEM text this material stands for.
    pub fn render(&self) -> String {
        match self {
            Material::Empty => String::new(),
            Material::Fixture(i) => crate::fixtures::pick(*i).to_owned(),
            Material::Fixtures(list) => list
                .iter()
                .map(|&i| crate::fixtures::pick(i))
                .collect::<String>(),
            Material::Edited(i, edits) => {
                let Some((label, mut der)) = first_block(crate::fixtures::pick(*i)) else {
                    return String::new();
                };
                for edit in edits {
                    edit.apply(&mut der);
                }
                armour(&label, &der)
            }
            Material::Resigned(i, edits) => resigned(*i, edits).unwrap_or_default(),
            Material::Der(label, der) => armour(label.as_str(), der),
            Material::Text(text) => text.clone(),
        }
    }
}

impl Edit {
    fn apply(&self, der: &mut Vec<u8>) {
        let at = |pos: u16, len: usize| usize::from(pos) % (len + 1);
        match self {
            Edit::Xor { at: pos, mask } => {
                if !der.is_empty() {
                    let i = usize::from(*pos) % der.len();
                    der[i] ^= mask;
                }
            }
            Edit::Set { at: pos, byte } => {
                if !der.is_empty() {
                    let i = usize::from(*pos) % der.len();
                    der[i] = *byte;
                }
            }
            Edit::Truncate { at: pos } => der.truncate(at(*pos, der.len())),
            Edit::Insert { at: pos, bytes } => {
                let i = at(*pos, der.len());
                der.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove { at: pos, len } => {
                let start = at(*pos, der.len());
                let end = (start + usize::from(*len)).min(der.len());
                der.drain(start..end);
            }
        }
    }
}

/// [`Material::Resigned`]: `None` when a key refuses to sign.
fn resigned(index: u8, edits: &[Edit]) -> Option<String> {
    static KEYS: OnceLock<Vec<KeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        SIGNED
            .iter()
            .map(|(_, key)| KeyPair::from_pem(key).expect("fixture key parses"))
            .collect()
    });
    let i = usize::from(index) % SIGNED.len();
    let (label, der) = first_block(SIGNED[i].0)?;
    let (tbs, alg) = der::split_signed(&der)?;
    let mut tbs = tbs.to_vec();
    for edit in edits {
        edit.apply(&mut tbs);
    }
    let signature = keys[i].sign(&tbs).ok()?;
    Some(armour(&label, &der::join_signed(&tbs, alg, &signature)))
}

/// The label and DER of the first PEM block of `pem`.
pub fn first_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = label_end + "-----".len();
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest
        .get(body_start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    Some((label.to_owned(), der))
}

/// `der` as a PEM block under `label`, 64 columns.
pub fn armour(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
