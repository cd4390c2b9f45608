//! Tests of the authentication entry point (every credential kind) and of
//! the authorizer and review answers over the default policy.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::*;

fn creds() -> (tempfile::TempDir, ClusterCredentials) {
    let dir = tempfile::tempdir().unwrap();
    let creds = ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
    (dir, creds)
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

#[tokio::test]
async fn bootstrap_tokens_authenticate() {
    let (_d, creds) = creds();
    let authn = Authenticator::new(&creds).unwrap();
    let admin = authn
        .authenticate(&bearer(creds.admin_token()), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.username, "admin");
    assert!(admin.groups.contains(&"system:masters".to_string()));
    assert!(admin.groups.contains(&"system:authenticated".to_string()));

    let node = authn
        .authenticate(&bearer(creds.node_bootstrap_token()), None)
        .await
        .unwrap()
        .unwrap();
    assert!(node.username.starts_with("system:bootstrap:"));
    assert!(node.groups.contains(&"system:nodes".to_string()));

    assert!(
        authn
            .authenticate(&http::HeaderMap::new(), None)
            .await
            .unwrap()
            .is_none()
    );
    let bad = authn
        .authenticate(&bearer("not-a-token"), None)
        .await
        .unwrap_err();
    assert_eq!(bad.code_and_reason().0, http::StatusCode::UNAUTHORIZED);
    let near_miss = format!("{}x", creds.admin_token());
    assert!(authn.authenticate(&bearer(&near_miss), None).await.is_err());
}

#[tokio::test]
async fn service_account_tokens_authenticate_with_the_right_audience() {
    let (_d, creds) = creds();
    let authn = Authenticator::new(&creds).unwrap();
    let token =
        authn.issue_service_account_token("team", "bot", "uid-7", &[], Duration::from_secs(600));
    let user = authn
        .authenticate(&bearer(&token), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "system:serviceaccount:team:bot");
    assert_eq!(user.uid, "uid-7");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ]
    );

    let vault = authn.issue_service_account_token(
        "team",
        "bot",
        "uid-7",
        &["vault".into()],
        Duration::from_secs(600),
    );
    assert!(authn.authenticate(&bearer(&vault), None).await.is_err());

    // A token signed by another cluster's key is refused.
    let (_d2, other) = self::creds();
    let foreign = Authenticator::new(&other)
        .unwrap()
        .issue_service_account_token("team", "bot", "u", &[], Duration::from_secs(600));
    assert!(authn.authenticate(&bearer(&foreign), None).await.is_err());
}

#[tokio::test]
async fn websocket_subprotocol_token_authenticates() {
    let (_d, creds) = creds();
    let authn = Authenticator::new(&creds).unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(creds.admin_token());
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        format!("v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.{encoded}")
            .parse()
            .unwrap(),
    );
    assert_eq!(
        authn
            .authenticate(&h, None)
            .await
            .unwrap()
            .unwrap()
            .username,
        "admin"
    );
}

#[tokio::test]
async fn client_certificates_authenticate_as_cn_and_o() {
    let (_d, creds) = creds();
    let authn = Authenticator::new(&creds).unwrap();
    let (cert_pem, _) = creds
        .issue_client_certificate("jane", &["devs".to_string(), "ops".to_string()])
        .unwrap();
    let der = crate::pki::pem_to_der(&cert_pem, "CERTIFICATE").unwrap();
    // The certificate wins over a (bad) token, as in Kubernetes.
    let user = authn
        .authenticate(&bearer("junk"), Some(&der))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "jane");
    assert_eq!(user.groups, ["devs", "ops", "system:authenticated"]);

    let admin_der = crate::pki::pem_to_der(creds.admin_client_cert_pem(), "CERTIFICATE").unwrap();
    let admin = authn
        .authenticate(&http::HeaderMap::new(), Some(&admin_der))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.username, "admin");
    assert!(admin.groups.contains(&"system:masters".to_string()));
    assert!(
        authn
            .authenticate(&http::HeaderMap::new(), Some(b"garbage"))
            .await
            .is_err()
    );
}

fn default_authorizer() -> Authorizer {
    let mut policy = RbacPolicy::default();
    for (key, obj) in default_policy() {
        policy.apply(&key, Some(obj.to_string().as_bytes()));
    }
    Authorizer::from_policy(policy)
}

fn sa_user() -> UserInfo {
    UserInfo {
        username: "system:serviceaccount:default:x".into(),
        uid: String::new(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ],
    }
}

#[tokio::test]
async fn authorize_denies_with_the_kubernetes_message() {
    let authz = default_authorizer();
    let attrs = RequestAttributes {
        verb: "list".into(),
        resource_request: true,
        api_version: "v1".into(),
        resource: "pods".into(),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let err = authz.authorize(&sa_user(), &attrs).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"pods is forbidden: User "system:serviceaccount:default:x" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let admin = UserInfo {
        username: "admin".into(),
        groups: vec!["system:masters".into()],
        ..Default::default()
    };
    authz.authorize(&admin, &attrs).await.unwrap();
}

#[tokio::test]
async fn access_reviews_answer_can_i() {
    let authz = default_authorizer();
    let ssar = |verb: &str, resource: &str| {
        json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {"creationTimestamp": null},
               "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}}, "status": {"allowed": false}})
    };
    let out = review::self_subject_access_review(&authz, &sa_user(), ssar("list", "pods"))
        .await
        .unwrap();
    assert_eq!(out["status"]["allowed"], false);
    let out = review::self_subject_access_review(&authz, &sa_user(), json!({"spec": {
        "resourceAttributes": {"group": "authorization.k8s.io", "verb": "create", "resource": "selfsubjectaccessreviews"}}}))
    .await
    .unwrap();
    assert_eq!(out["status"]["allowed"], true);
    assert_eq!(out["kind"], "SelfSubjectAccessReview");
    let out = review::self_subject_access_review(
        &authz,
        &sa_user(),
        json!({"spec": {
        "nonResourceAttributes": {"path": "/version", "verb": "get"}}}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"]["allowed"], true);
    let err = review::self_subject_access_review(&authz, &sa_user(), json!({"spec": {}}))
        .await
        .unwrap_err();
    assert_eq!(
        err.code_and_reason().0,
        http::StatusCode::UNPROCESSABLE_ENTITY
    );

    let sar = json!({"spec": {"user": "admin", "groups": ["system:masters"],
        "resourceAttributes": {"verb": "delete", "resource": "nodes"}}});
    assert_eq!(
        review::subject_access_review(&authz, sar).await.unwrap()["status"]["allowed"],
        true
    );

    let rules = review::self_subject_rules_review(
        &authz,
        &sa_user(),
        json!({"spec": {"namespace": "default"}}),
    )
    .unwrap();
    let resource_rules = rules["status"]["resourceRules"].as_array().unwrap();
    assert!(
        resource_rules
            .iter()
            .any(|r| r["resources"][0] == "selfsubjectaccessreviews")
    );
    assert!(
        !rules["status"]["nonResourceRules"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let me = review::self_subject_review(&sa_user());
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:x"
    );
}

#[tokio::test]
async fn token_review_reports_the_user() {
    let (_d, creds) = creds();
    let authn = Authenticator::new(&creds).unwrap();
    let token =
        authn.issue_service_account_token("default", "x", "u", &[], Duration::from_secs(60));
    let out = review::token_review(&authn, json!({"spec": {"token": token}}))
        .await
        .unwrap();
    assert_eq!(out["status"]["authenticated"], true);
    assert_eq!(
        out["status"]["user"]["username"],
        "system:serviceaccount:default:x"
    );
    let out = review::token_review(&authn, json!({"spec": {"token": "nope"}}))
        .await
        .unwrap();
    assert_eq!(out["status"]["authenticated"], false);
}
