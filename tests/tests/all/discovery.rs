//! Service discovery against a local authoritative DNS server: SRV (Consul, Kubernetes named
//! ports) and A records, priorities and weights, errors that name what failed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use harness::dns::{TestDnsServer, TestRecord};
use user_service::outbound::discovery::{
    Discovery, DiscoveryError, ResolvedService, ServiceLocation,
};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn a(name: &str) -> TestRecord {
    TestRecord::A {
        name: name.into(),
        ip: LOCALHOST,
        ttl: 30,
    }
}

fn srv(name: &str, priority: u16, weight: u16, port: u16, target: &str) -> TestRecord {
    TestRecord::Srv {
        name: name.into(),
        priority,
        weight,
        port,
        target: target.into(),
        ttl: 30,
    }
}

fn one(service: &str, location: ServiceLocation) -> Result<Discovery, DiscoveryError> {
    Discovery::new(&BTreeMap::from([(service.to_owned(), location)]))
}

fn srv_at(name: &str, server: &TestDnsServer) -> ServiceLocation {
    ServiceLocation {
        srv: Some(name.into()),
        dns_servers: vec![server.address()],
        ..Default::default()
    }
}

#[tokio::test]
async fn srv_resolves_target_from_additional_section() {
    let server = TestDnsServer::start(vec![
        srv("_http._tcp.notify.test.", 1, 1, 8081, "node1.notify.test."),
        a("node1.notify.test."),
    ])
    .await;
    let discovery = one(
        "notification-service",
        srv_at("_http._tcp.notify.test", &server),
    )
    .unwrap();
    let resolved = discovery.resolve("notification-service").await.unwrap();
    assert_eq!(
        resolved,
        ResolvedService {
            base_url: "http://127.0.0.1:8081".into(),
            host_header: "node1.notify.test".into()
        }
    );
    // The name went out as-is (no search domain) and the A came as an additional record.
    assert_eq!(
        server.queries(),
        vec![("_http._tcp.notify.test".to_owned(), "SRV".to_owned())]
    );
    assert_eq!(
        discovery.services().collect::<Vec<_>>(),
        ["notification-service"]
    );
}

#[tokio::test]
async fn lowest_priority_wins_and_scheme_and_base_path_apply() {
    let server = TestDnsServer::start(vec![
        srv("_http._tcp.prio.test", 20, 100, 9002, "node2.prio.test"),
        srv("_http._tcp.prio.test", 10, 1, 9001, "node1.prio.test"),
        srv("_http._tcp.prio.test", 10, 0, 9003, "node3.prio.test"),
        a("node1.prio.test"),
        a("node2.prio.test"),
        a("node3.prio.test"),
    ])
    .await;
    let location = ServiceLocation {
        base_path: "api/".into(),
        ..srv_at("_http._tcp.prio.test", &server)
    };
    let discovery = one("svc", location.clone()).unwrap();
    for _ in 0..20 {
        let resolved = discovery.resolve("svc").await.unwrap();
        // node3 has weight 0 next to a weighted peer, so it never wins.
        assert_eq!(resolved.base_url, "http://127.0.0.1:9001/api");
        assert_eq!(resolved.host_header, "node1.prio.test");
    }
    // Hickory keeps additionals only for the last SRV target, so node1's address was queried.
    assert!(
        server
            .queries()
            .contains(&("node1.prio.test".to_owned(), "A".to_owned()))
    );
    // Over TLS the URL keeps the target's name, which the certificate is checked against.
    let tls = one(
        "svc",
        ServiceLocation {
            scheme: "https".into(),
            ..location
        },
    )
    .unwrap();
    assert_eq!(
        tls.resolve("svc").await.unwrap().base_url,
        "https://node1.prio.test:9001/api"
    );
}

#[tokio::test]
async fn url_host_resolved_with_configured_servers() {
    let server = TestDnsServer::start(vec![a("config.test")]).await;
    let location = ServiceLocation {
        url: Some("http://config.test:9000/".into()),
        dns_servers: vec![server.address()],
        ..Default::default()
    };
    let resolved = one("configuration-service", location)
        .unwrap()
        .resolve("configuration-service")
        .await
        .unwrap();
    assert_eq!(
        resolved,
        ResolvedService {
            base_url: "http://127.0.0.1:9000".into(),
            host_header: "config.test".into()
        }
    );
    assert_eq!(
        server.queries(),
        vec![("config.test".to_owned(), "A".to_owned())]
    );
}

#[tokio::test]
async fn url_without_servers_is_returned_unchanged() {
    let url = "http://notification-service.default.svc:8080";
    let discovery = one(
        "n",
        ServiceLocation {
            url: Some(url.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let resolved = discovery.resolve("n").await.unwrap();
    assert_eq!(resolved.base_url, url);
    assert_eq!(resolved.host_header, "notification-service.default.svc");
}

#[tokio::test]
async fn errors_name_the_service_and_dns_name() {
    let server = TestDnsServer::start(vec![a("other.test")]).await;
    let discovery = one(
        "notification-service",
        srv_at("_http._tcp.missing.test", &server),
    )
    .unwrap();
    let err = discovery.resolve("notification-service").await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Lookup { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("_http._tcp.missing.test"), "{message}");
    assert!(message.contains("notification-service"), "{message}");
    assert!(message.contains("NXDOMAIN"), "{message}");

    let err = discovery.resolve("billing-service").await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::UnknownService(s) if s == "billing-service"),
        "{err:?}"
    );
}

#[test]
fn invalid_locations_are_rejected_at_startup() {
    let both = ServiceLocation {
        url: Some("http://a.test".into()),
        srv: Some("_http._tcp.a.test".into()),
        ..Default::default()
    };
    let neither = ServiceLocation::default();
    let ftp = ServiceLocation {
        url: Some("ftp://a.test".into()),
        ..Default::default()
    };
    let scheme = ServiceLocation {
        srv: Some("_x._tcp.a.test".into()),
        scheme: "gopher".into(),
        ..Default::default()
    };
    for location in [both, neither, ftp, scheme] {
        match one("svc", location) {
            Err(err @ DiscoveryError::Misconfigured { .. }) => {
                assert!(err.to_string().contains("svc"), "{err}");
            }
            Err(err) => panic!("unexpected {err:?}"),
            Ok(_) => panic!("accepted"),
        }
    }
}

#[test]
fn toml_services_table_parses() {
    type Config = user_service::ServiceConfig;
    let config: Config = toml::from_str(
        "[services.notification-service]\nsrv = \"_http._tcp.notification-service.service.consul\"\ndns-servers = [\"127.0.0.1:5353\"]\nbase-path = \"/api\"\n",
    )
    .unwrap();
    let location = &config.services["notification-service"];
    assert_eq!(
        location.srv.as_deref(),
        Some("_http._tcp.notification-service.service.consul")
    );
    assert_eq!(
        location.dns_servers,
        vec!["127.0.0.1:5353".parse().unwrap()]
    );
    assert_eq!(location.base_path, "/api");
    assert!(toml::from_str::<Config>("[services.x]\nsrvv = \"typo\"\n").is_err());
}
