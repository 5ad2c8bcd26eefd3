//! `GET /v1/services/{svc}/nodes/{node}/bundle`: what a node should have (version,
//! content hash, certificate details, metadata) next to what it acknowledged. The same
//! code that serves agents builds it, so the hash shown is the hash the node must ack;
//! the private key is never part of the answer.

use super::delivery::serve;
use super::extract::ApiPath;
use super::extract::Caller;
use super::nodes::visible_node;
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::store;
use axum::Json;
use axum::extract::State;
use ferry_shared::metadata::{CertificateDetails, DesiredBundle, NodeBundleView};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Details of the PEM certificate, if it is one (a node-key node owing its first CSR
/// has none yet).
fn details(pem: &str) -> Option<CertificateDetails> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&parsed.contents).ok()?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::URI(u) => format!("URI:{u}"),
                    GeneralName::IPAddress(ip) => format!("IP:{}", hex::encode(ip)),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertificateDetails {
        serial: cert.tbs_certificate.raw_serial_as_string(),
        subject: cert.subject().to_string(),
        sans,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        pem: pem.to_owned(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/nodes/{node}/bundle",
    tag = "nodes",
    operation_id = "getNodeBundle",
    summary = "What a node should have next to what it acknowledged (never a private key).",
    params(doc::NodePath),
    responses(
        (status = 200, description = "The bundle view.", body = NodeBundleView),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node)): ApiPath<(String, String)>,
) -> Result<Json<NodeBundleView>, ApiError> {
    let (_, row) = visible_node(&state, &caller, &svc, &node).await?;
    let key_mode = visible_key_mode(&state, &caller, &svc).await?;
    let (s, n, st) = (row.service.clone(), row.node_id.clone(), state.clone());
    let current = state
        .store
        .snapshot(move |c| {
            serve(&st)
                .current(c, &s, &n, store::now_ms(), false)
                .map_err(|e| ApiError::Internal(e.into()))
        })
        .await?;
    let desired = current.map(|b| DesiredBundle {
        version: b.version,
        content_hash: b.content_hash,
        key_mode: key_mode.clone(),
        certificate: details(&b.certificate),
        metadata: b.metadata,
        csr_required: b.csr_required,
    });
    let in_sync = desired.as_ref().is_some_and(|d| {
        d.version == row.acked_version && row.acked_hash.as_deref() == Some(&d.content_hash)
    });
    Ok(Json(NodeBundleView {
        service: row.service,
        node_id: row.node_id,
        desired,
        acked_version: row.acked_version,
        acked_hash: row.acked_hash,
        acked_at: row.acked_at.map(store::from_ms),
        in_sync,
    }))
}

async fn visible_key_mode(
    state: &AppState,
    caller: &Caller,
    svc: &str,
) -> Result<String, ApiError> {
    Ok(super::services::visible(state, caller, svc).await?.key_mode)
}
