//! Tests of the audit log: the Event's JSON, source IPs, rotation, and
//! dropping events when the writer is behind.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::event::source_ips;
use super::file::backup;
use super::*;
use crate::api::request::{RequestAttributes, UserInfo};

fn attrs() -> RequestAttributes {
    RequestAttributes {
        verb: "get".into(),
        resource_request: true,
        api_group: "apps".into(),
        api_version: "v1".into(),
        resource: "deployments".into(),
        subresource: "scale".into(),
        namespace: Some("team".into()),
        name: Some("web".into()),
        path: "/apis/apps/v1/namespaces/team/deployments/web/scale".into(),
    }
}

fn event(id: &str) -> Event {
    let uri: http::Uri = "/apis/apps/v1/namespaces/team/deployments/web/scale?pretty=1"
        .parse()
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", "kubectl/v1.33.0".parse().unwrap());
    let peer = "127.0.0.1".parse().ok();
    Event::new(id, &uri, &headers, &attrs(), peer, Utc::now())
}

#[test]
fn an_event_is_an_audit_k8s_io_v1_event_at_level_metadata() {
    let mut e = event("id-1");
    e.set_user(&UserInfo {
        username: "alice".into(),
        uid: String::new(),
        groups: vec!["dev".into(), "system:authenticated".into()],
    });
    e.set_impersonated(&UserInfo {
        username: "bob".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
    });
    e.set_allowed();
    let v = serde_json::to_value(e.complete(200)).unwrap();
    assert_eq!(v["kind"], "Event");
    assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(v["level"], "Metadata");
    assert_eq!(v["auditID"], "id-1");
    assert_eq!(v["stage"], "ResponseComplete");
    assert_eq!(
        v["requestURI"],
        "/apis/apps/v1/namespaces/team/deployments/web/scale?pretty=1"
    );
    assert_eq!(v["verb"], "get");
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["user"]["groups"][0], "dev");
    assert!(v["user"].get("uid").is_none());
    assert_eq!(v["impersonatedUser"]["username"], "bob");
    assert_eq!(v["sourceIPs"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(v["userAgent"], "kubectl/v1.33.0");
    assert_eq!(
        v["objectRef"],
        serde_json::json!({"resource": "deployments", "namespace": "team", "name": "web",
            "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"})
    );
    assert_eq!(
        v["responseStatus"],
        serde_json::json!({"metadata": {}, "code": 200})
    );
    assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "allow");
    for field in ["requestReceivedTimestamp", "stageTimestamp"] {
        let ts = v[field].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z') && ts.len() == "2025-01-01T00:00:00.000000Z".len());
    }
}

#[test]
fn refused_and_non_resource_requests() {
    let uri: http::Uri = "/version".parse().unwrap();
    let attrs = RequestAttributes {
        verb: "get".into(),
        path: "/version".into(),
        ..Default::default()
    };
    let mut e = Event::new(
        "id",
        &uri,
        &http::HeaderMap::new(),
        &attrs,
        None,
        Utc::now(),
    );
    e.set_anonymous();
    e.set_refused(&ApiError::Unauthorized);
    let v = serde_json::to_value(e.complete(401)).unwrap();
    assert!(v.get("objectRef").is_none() && v.get("userAgent").is_none());
    assert_eq!(v["user"]["username"], "system:anonymous");
    assert_eq!(v["responseStatus"]["code"], 401);
    assert_eq!(v["responseStatus"]["status"], "Failure");
    assert_eq!(v["responseStatus"]["reason"], "Unauthorized");
    assert!(v.get("annotations").is_none());

    let mut e = event("id");
    e.set_refused(&ApiError::Forbidden {
        message: "no".into(),
        group: String::new(),
        kind: String::new(),
        name: String::new(),
    });
    let v = serde_json::to_value(e.complete(403)).unwrap();
    assert_eq!(v["responseStatus"]["reason"], "Forbidden");
    assert_eq!(v["responseStatus"]["message"], "no");
    assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "forbid");
}

#[test]
fn source_ips_are_forwarded_then_real_then_peer_without_repeats() {
    let mut headers = http::HeaderMap::new();
    headers.append("x-forwarded-for", "10.0.0.1, 10.0.0.2".parse().unwrap());
    headers.append("x-forwarded-for", "junk, 10.0.0.1".parse().unwrap());
    headers.insert("x-real-ip", "10.0.0.3".parse().unwrap());
    let ips = source_ips(&headers, "10.0.0.2".parse().ok());
    assert_eq!(ips, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(
        source_ips(&http::HeaderMap::new(), "::1".parse().ok()),
        ["::1"]
    );
}

#[tokio::test]
async fn the_file_rotates_by_size_and_keeps_max_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("audit.log");
    let line_len = serde_json::to_vec(&event("e00").complete(200))
        .unwrap()
        .len() as u64
        + 1;
    let limits = Limits {
        max_size: line_len * 3,
        max_backups: 2,
        queue: 100,
    };
    let (log, writer) = AuditLog::start(&path, limits).unwrap();
    for i in 0..20 {
        log.send(event(&format!("e{i:02}")).complete(200));
    }
    drop(log);
    writer.finished(Duration::from_secs(10)).await;
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ids = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["auditID"].as_str().unwrap().to_string())
            .collect()
    };
    // 20 events, 3 a file: the last two in audit.log, three in each backup.
    assert_eq!(ids(read(&path)), ["e18", "e19"]);
    assert_eq!(ids(read(&backup(&path, 1))), ["e15", "e16", "e17"]);
    assert_eq!(ids(read(&backup(&path, 2))), ["e12", "e13", "e14"]);
    assert!(!backup(&path, 3).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let (tx, _rx) = mpsc::channel(2);
    let log = AuditLog {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    for i in 0..5 {
        log.send(event(&i.to_string()).complete(200));
    }
    assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
}
