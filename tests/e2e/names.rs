//! Certificate names beyond DNS: an IP address in the SAN template becomes an IP SAN,
//! and only inside the IP networks the deployment admin allowed for the service
//! (`ferryctl service update --ip-range`); a tenant can neither set those networks nor
//! name an address outside them, and no policy lets a certificate name a loopback or
//! link-local address.

use ferry_tests::agent::spawn_agent;
use ferry_tests::ferryctl::{Ferryctl, json_of};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// The DNS and IP SANs of a PEM certificate, as text.
fn sans(pem: &str) -> (Vec<String>, Vec<String>) {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM");
    let (_, cert) = X509Certificate::from_der(&der).expect("parses");
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => ips.push(match b.len() {
                        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).expect("4"))
                            .to_string(),
                        _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).expect("16"))
                            .to_string(),
                    }),
                    _ => {}
                }
            }
        }
    }
    (dns, ips)
}

#[tokio::test]
async fn ip_sans_are_issued_only_inside_the_admins_networks() {
    // Arrange: tenant alpha's service alpha-web.
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let alpha = cp.tenant("alpha").await;
    let created = alpha
        .post("/v1/services", json!({ "name": "alpha-web" }))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let with_ip = json!({ "san_template": "{node}.{service}.{trust_domain}, 10.20.3.4" });

    // Without an admin's network, no IP at all; the tenant cannot grant one itself.
    let r = alpha.patch("/v1/services/alpha-web", with_ip.clone()).await;
    assert_eq!(r.assert_problem(422), "name-not-allowed", "{}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ip_ranges")),
        "{}",
        r.body
    );
    let r = alpha
        .patch(
            "/v1/services/alpha-web",
            json!({ "ip_ranges": ["10.20.0.0/16"] }),
        )
        .await;
    r.assert_problem(403);

    // The admin allows 10.20.0.0/16 with ferryctl; a malformed network is one clear line.
    let ctl = Ferryctl::new(&cp);
    let bad = ctl
        .run(&[
            "service",
            "update",
            "alpha-web",
            "--ip-range",
            "10.20.0.1/16",
        ])
        .await;
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("host bits") && said.trim().lines().count() == 1,
        "{said}"
    );
    let updated = json_of(
        &ctl.run(&[
            "--json",
            "service",
            "update",
            "alpha-web",
            "--ip-range",
            "10.20.0.0/16",
        ])
        .await,
    );
    assert_eq!(updated["ip_ranges"], json!(["10.20.0.0/16"]));

    // Inside it the tenant may name addresses; outside it, or loopback, never.
    for outside in ["10.21.0.1", "127.0.0.1", "169.254.169.254", "::1"] {
        let r = alpha
            .patch("/v1/services/alpha-web", json!({ "san_template": outside }))
            .await;
        assert_eq!(
            r.assert_problem(422),
            "name-not-allowed",
            "{outside}: {}",
            r.body
        );
    }
    let r = alpha.patch("/v1/services/alpha-web", with_ip).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Act: a node enrolls and gets its certificate.
    let (token, _) = cp.join_token("alpha-web", 1, 600).await;
    let agent = spawn_agent(&cp, "alpha-web", "n1", &token, |_| {}).await;
    let installed = eventually("installed", Duration::from_secs(30), || async {
        agent.installed()
    })
    .await;

    // Assert: the address is an IP SAN, not a DNS name.
    let (dns, ips) = sans(&installed.cert_pem);
    assert_eq!(dns, ["n1.alpha-web.ferry.local"]);
    assert_eq!(ips, ["10.20.3.4"]);
}
