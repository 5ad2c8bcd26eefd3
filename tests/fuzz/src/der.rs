//! Just enough DER to take a signed structure apart and put it back together: a
//! certificate or CSR is `SEQUENCE { signed content, algorithm, BIT STRING signature }`.
//! Lets [`crate::material::Material::Resigned`] edit the signed content and sign it
//! again, so the checks behind the signature see edited input.

/// The header length and the whole length of the TLV at the start of `der` (one-byte
/// tags, which is all X.509 uses at this level).
fn tlv(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = der.get(2..2 + n)?;
        (
            2 + n,
            bytes.iter().fold(0, |acc, &b| acc << 8 | usize::from(b)),
        )
    };
    let total = header + len;
    (total <= der.len()).then_some((header, total))
}

/// The signed content and the algorithm identifier of a signed structure.
pub fn split_signed(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (header, total) = tlv(der)?;
    let content = &der[header..total];
    let (_, tbs) = tlv(content)?;
    let (_, alg) = tlv(&content[tbs..])?;
    Some((&content[..tbs], &content[tbs..tbs + alg]))
}

/// `SEQUENCE { tbs, alg, BIT STRING signature }`.
pub fn join_signed(tbs: &[u8], alg: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x03];
    bits.extend(length(signature.len() + 1));
    bits.push(0x00);
    bits.extend_from_slice(signature);
    let body_len = tbs.len() + alg.len() + bits.len();
    let mut out = vec![0x30];
    out.extend(length(body_len));
    out.extend_from_slice(tbs);
    out.extend_from_slice(alg);
    out.extend(bits);
    out
}

/// A DER length.
fn length(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}
