//! The fixtures the targets build their inputs from: a real Ferry CA, the certificates
//! and keys it issued, an imported-style chain (root, intermediate, leaf) and CSRs as the
//! agent makes them. Written by `examples/seeds.rs` at [`crate::FIXTURE_TIME`]; test
//! material only, never used outside the fuzz targets.

/// The Ferry root CA (`Ca::generate`) and its private key.
pub const CA_CERT: &str = include_str!("../fixtures/ca.pem");
pub const CA_KEY: &str = include_str!("../fixtures/ca.key.pem");

/// The node key kept on the node in node-key mode (Ed25519), and its certificate.
pub const NODE_KEY: &str = include_str!("../fixtures/node.key.pem");

const LEAF_P256: &str = include_str!("../fixtures/leaf-p256.pem");
const LEAF_P256_KEY: &str = include_str!("../fixtures/leaf-p256.key.pem");
const LEAF_RSA: &str = include_str!("../fixtures/leaf-rsa.pem");
const LEAF_RSA_KEY: &str = include_str!("../fixtures/leaf-rsa.key.pem");
const LEAF_NODE: &str = include_str!("../fixtures/leaf-node.pem");
const IMPORTED_ROOT: &str = include_str!("../fixtures/imported-root.pem");
const IMPORTED_INTERMEDIATE: &str = include_str!("../fixtures/imported-intermediate.pem");
const IMPORTED_INTERMEDIATE_KEY: &str = include_str!("../fixtures/imported-intermediate.key.pem");
const IMPORTED_LEAF: &str = include_str!("../fixtures/imported-leaf.pem");
const IMPORTED_LEAF_KEY: &str = include_str!("../fixtures/imported-leaf.key.pem");
const CSR_P256: &str = include_str!("../fixtures/csr-p256.pem");
const CSR_ED25519: &str = include_str!("../fixtures/csr-ed25519.pem");
const CSR_RSA: &str = include_str!("../fixtures/csr-rsa.pem");
const CSR_ASKS_TOO_MUCH: &str = include_str!("../fixtures/csr-asks-too-much.pem");

/// Every certificate: Ferry's root, leaves it issued (central P-256 and RSA, node-key
/// Ed25519), and an imported chain (another root, an intermediate, a leaf).
pub const CERTS: &[&str] = &[
    CA_CERT,
    LEAF_P256,
    LEAF_RSA,
    LEAF_NODE,
    IMPORTED_ROOT,
    IMPORTED_INTERMEDIATE,
    IMPORTED_LEAF,
];

/// Every private key: the CA's, the leaves' above, the node's, the intermediate's.
pub const KEYS: &[&str] = &[
    CA_KEY,
    LEAF_P256_KEY,
    LEAF_RSA_KEY,
    NODE_KEY,
    IMPORTED_INTERMEDIATE_KEY,
    IMPORTED_LEAF_KEY,
];

/// CSRs: the agent's (`NodeKey::csr_pem`) for each key type (with the keys of the
/// P-256 leaf, the node and the RSA leaf), and one asking for SANs, a CA bit and a
/// subject the CA must ignore (with the imported leaf's key).
pub const CSRS: &[&str] = &[CSR_P256, CSR_ED25519, CSR_RSA, CSR_ASKS_TOO_MUCH];

/// Signed fixtures with the key that signed them, for
/// [`crate::material::Material::Resigned`]: certificates with their issuer's key, CSRs
/// with their own (whoever sends a CSR holds its key, so its signature proves nothing
/// about its content).
pub const SIGNED: &[(&str, &str)] = &[
    (LEAF_P256, CA_KEY),
    (LEAF_RSA, CA_KEY),
    (LEAF_NODE, CA_KEY),
    (IMPORTED_LEAF, IMPORTED_INTERMEDIATE_KEY),
    (CSR_P256, LEAF_P256_KEY),
    (CSR_ED25519, NODE_KEY),
    (CSR_RSA, LEAF_RSA_KEY),
    (CSR_ASKS_TOO_MUCH, IMPORTED_LEAF_KEY),
];

/// Every fixture, certificates first: what [`crate::material::Material`] indexes.
pub fn all() -> impl Iterator<Item = &'static str> {
    CERTS.iter().chain(KEYS).chain(CSRS).copied()
}

/// The fixture at `index` (wrapping), or "" when there are none.
pub fn pick(index: u8) -> &'static str {
    let n = CERTS.len() + KEYS.len() + CSRS.len();
    all().nth(usize::from(index) % n).unwrap_or("")
}

/// The [`pick`] index of `fixture`, one of [`all`].
pub fn index_of(fixture: &str) -> u8 {
    let i = all()
        .position(|f| f == fixture)
        .expect("one of the fixtures");
    u8::try_from(i).expect("fewer than 256 fixtures")
}

/// The [`SIGNED`] index of `fixture`.
pub fn signed_index_of(fixture: &str) -> u8 {
    let i = SIGNED
        .iter()
        .position(|(f, _)| *f == fixture)
        .expect("a signed fixture");
    u8::try_from(i).expect("fewer than 256 fixtures")
}
