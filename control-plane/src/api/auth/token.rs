//! ServiceAccount tokens: compact JWTs (ES256) signed with the cluster's
//! ServiceAccount key, in the shape of Kubernetes' bound tokens
//! (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, `kubernetes.io`).
//! Issuing and verifying only; which user a token maps to is in `mod.rs`.

use std::time::Duration;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use serde::{Deserialize, Serialize};

/// The issuer and default audience of tokens this cluster signs.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The object a token is bound to (a Pod or Secret), as in TokenRequest's boundObjectRef.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundObject {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim of a ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: BoundObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<BoundObject>,
}

/// The claims of a ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// Why a token was refused (all map to 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("token audiences do not include the API server")]
    WrongAudience,
}

/// Signs and verifies ServiceAccount tokens with one ECDSA P-256 key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    public_key: Vec<u8>,
    key_id: String,
    issuer: String,
    rng: SystemRandom,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl TokenSigner {
    /// A signer from a PKCS#8 ECDSA P-256 key (`ClusterCredentials::service_account_key_pkcs8`).
    pub fn new(pkcs8: &[u8], issuer: &str) -> Result<TokenSigner, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| e.to_string())?;
        let public_key = key.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public_key);
        let key_id = B64.encode(&digest.as_ref()[..16]);
        Ok(TokenSigner {
            key,
            public_key,
            key_id,
            issuer: issuer.to_string(),
            rng,
        })
    }

    /// The `iss` of tokens this signer makes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for ServiceAccount `namespace/name` (uid `uid`), valid for
    /// `audiences` (the issuer when empty) for `expiration` from now,
    /// optionally bound to a pod.
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiration: Duration,
        pod: Option<BoundObject>,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let aud = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        let claims = ServiceAccountClaims {
            iss: self.issuer.clone(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud,
            exp: now + expiration.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaim {
                namespace: namespace.to_string(),
                serviceaccount: BoundObject {
                    name: name.to_string(),
                    uid: uid.to_string(),
                },
                pod,
            },
        };
        let header = serde_json::json!({ "alg": "ES256", "kid": self.key_id, "typ": "JWT" });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        match self.key.sign(&self.rng, signing_input.as_bytes()) {
            Ok(sig) => format!("{signing_input}.{}", B64.encode(sig.as_ref())),
            // ring's ECDSA signing only fails when the system RNG does;
            // an unsigned token is refused by every verifier.
            Err(_) => format!("{signing_input}."),
        }
    }

    /// The claims of a valid token whose audiences include one of
    /// `accepted_audiences`; an error for anything else.
    pub fn verify(
        &self,
        token: &str,
        accepted_audiences: &[String],
    ) -> Result<ServiceAccountClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(header).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return Err(TokenError::BadSignature);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signing_input_len = token.rfind('.').ok_or(TokenError::Malformed)?;
        let public =
            ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key);
        public
            .verify(&token.as_bytes()[..signing_input_len], &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: ServiceAccountClaims =
            serde_json::from_slice(&B64.decode(payload).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let now = chrono::Utc::now().timestamp();
        // Kubernetes allows a minute of clock skew on both ends.
        if now > claims.exp + 60 {
            return Err(TokenError::Expired);
        }
        if now + 60 < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if !claims.aud.iter().any(|a| accepted_audiences.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        let expected_sub = format!(
            "system:serviceaccount:{}:{}",
            claims.kubernetes.namespace, claims.kubernetes.serviceaccount.name
        );
        if claims.sub != expected_sub {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenSigner::new(&key.serialize_der(), DEFAULT_ISSUER).unwrap()
    }

    fn api_audience() -> Vec<String> {
        vec![DEFAULT_ISSUER.to_string()]
    }

    #[test]
    fn round_trip_carries_the_service_account() {
        let s = signer();
        let token = s.issue(
            "default",
            "builder",
            "uid-1",
            &[],
            Duration::from_secs(3600),
            None,
        );
        let claims = s.verify(&token, &api_audience()).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:default:builder");
        assert_eq!(claims.kubernetes.serviceaccount.uid, "uid-1");
        assert_eq!(claims.aud, api_audience());
        assert!(claims.exp > claims.iat);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = signer();
        let token = s.issue("default", "x", "u", &[], Duration::from_secs(0), None);
        assert!(s.verify(&token, &api_audience()).is_ok(), "within skew");
        // Forge an old token by signing claims that expired two minutes ago.
        let mut claims = s.verify(&token, &api_audience()).unwrap();
        claims.exp -= 120;
        let header = B64.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
        let input = format!(
            "{header}.{}",
            B64.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = s.key.sign(&s.rng, input.as_bytes()).unwrap();
        let old = format!("{input}.{}", B64.encode(sig.as_ref()));
        assert_eq!(s.verify(&old, &api_audience()), Err(TokenError::Expired));
    }

    #[test]
    fn foreign_audience_and_tampering_are_refused() {
        let s = signer();
        let vault = s.issue(
            "default",
            "x",
            "u",
            &["vault".to_string()],
            Duration::from_secs(600),
            None,
        );
        assert_eq!(
            s.verify(&vault, &api_audience()),
            Err(TokenError::WrongAudience)
        );
        assert!(s.verify(&vault, &["vault".to_string()]).is_ok());

        let token = s.issue("default", "x", "u", &[], Duration::from_secs(600), None);
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(
            s.verify(&forged, &api_audience()),
            Err(TokenError::BadSignature)
        );

        let other = signer();
        assert_eq!(
            other.verify(&token, &api_audience()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(s.verify("abc", &api_audience()), Err(TokenError::Malformed));
        assert_eq!(
            s.verify("a.b.c", &api_audience()),
            Err(TokenError::Malformed)
        );
    }
}
