//! Decoding of the Kubernetes protobuf bodies kubectl's typed clients send
//! (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope and the
//! kinds `kubectl create ...`, `auth can-i`, `create token` and `drain`
//! produce, turned into JSON by per-kind field tables (field numbers from
//! the Kubernetes API's protobuf definitions). Other kinds get 415.

use serde_json::{Map, Value, json};

use super::error::ApiError;

const MAGIC: &[u8] = b"k8s\0";

/// One decoded protobuf field value.
#[derive(Debug, Clone)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid protobuf body: {why}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((number, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((number, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> String {
    match f {
        Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Field::Varint(v) => v.to_string(),
    }
}

/// How one field of a message maps to JSON.
enum Kind {
    Str,
    Strs,
    /// A non-pointer integer: 0 means unset (Go marshals it anyway).
    Int,
    /// A pointer integer: present means set, even when 0.
    IntPtr,
    Bool,
    /// map<string, string>
    Map,
    /// map<string, bytes> (base64 in JSON)
    MapBytes,
    /// map<string, Quantity>
    MapQuantity,
    /// meta.v1.Time
    Time,
    /// util.intstr.IntOrString
    IntOrString,
    Msg(Schema),
    Msgs(Schema),
    /// An embedded message whose fields appear in the parent (LocalObjectReference).
    Inline(Schema),
}

type Schema = &'static [(u64, &'static str, Kind)];

fn map_entry(buf: &[u8]) -> Result<(String, Option<Field<'_>>), ApiError> {
    let mut key = String::new();
    let mut value = None;
    for (n, f) in fields(buf)? {
        match n {
            1 => key = string(&f),
            2 => value = Some(f),
            _ => {}
        }
    }
    Ok((key, value))
}

fn scalar_message(buf: &[u8], number: u64) -> Result<Option<Field<'_>>, ApiError> {
    Ok(fields(buf)?
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, f)| f))
}

fn decode_into(buf: &[u8], schema: Schema, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    use base64::Engine as _;
    for (number, field) in fields(buf)? {
        let Some((_, name, kind)) = schema.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let name = name.to_string();
        let bytes = match &field {
            Field::Bytes(b) => Some(*b),
            Field::Varint(_) => None,
        };
        let value = match (kind, &field) {
            // Go marshals empty strings, zero integers and false booleans of
            // non-pointer fields; JSON omits them, and so do we.
            (Kind::Str, f) if string(f).is_empty() => continue,
            (Kind::Int, Field::Varint(0)) | (Kind::Bool, Field::Varint(0)) => continue,
            (Kind::Str, f) => json!(string(f)),
            (Kind::Int | Kind::IntPtr, Field::Varint(v)) => json!(*v as i64),
            (Kind::Bool, Field::Varint(v)) => json!(*v != 0),
            (Kind::Strs | Kind::Msgs(_), _) => {
                let item = match kind {
                    Kind::Msgs(inner) => {
                        decode_message(bytes.ok_or_else(|| bad("expected a message"))?, inner)?
                    }
                    _ => json!(string(&field)),
                };
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(item);
                }
                continue;
            }
            (Kind::Map | Kind::MapBytes | Kind::MapQuantity, Field::Bytes(b)) => {
                let (key, value) = map_entry(b)?;
                let value = match (kind, value) {
                    (Kind::MapBytes, Some(Field::Bytes(v))) => {
                        json!(base64::engine::general_purpose::STANDARD.encode(v))
                    }
                    (Kind::MapQuantity, Some(Field::Bytes(v))) => json!(
                        scalar_message(v, 1)?
                            .map(|f| string(&f))
                            .unwrap_or_default()
                    ),
                    (_, Some(f)) => json!(string(&f)),
                    (_, None) => json!(""),
                };
                let map = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, value);
                }
                continue;
            }
            (Kind::Time, Field::Bytes(b)) => {
                let secs = match scalar_message(b, 1)? {
                    Some(Field::Varint(v)) => v as i64,
                    _ => 0,
                };
                if secs == 0 {
                    continue;
                }
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
            (Kind::IntOrString, Field::Bytes(b)) => {
                let mut kind_is_string = false;
                let (mut int, mut text) = (0i64, String::new());
                for (n, f) in fields(b)? {
                    match (n, f) {
                        (1, Field::Varint(v)) => kind_is_string = v == 1,
                        (2, Field::Varint(v)) => int = v as i64,
                        (3, f) => text = string(&f),
                        _ => {}
                    }
                }
                if kind_is_string {
                    json!(text)
                } else {
                    json!(int)
                }
            }
            (Kind::Msg(inner), Field::Bytes(b)) => decode_message(b, inner)?,
            (Kind::Inline(inner), Field::Bytes(b)) => {
                decode_into(b, inner, out)?;
                continue;
            }
            _ => return Err(bad("field has the wrong wire type")),
        };
        out.insert(name, value);
    }
    Ok(())
}

fn decode_message(buf: &[u8], schema: Schema) -> Result<Value, ApiError> {
    let mut out = Map::new();
    decode_into(buf, schema, &mut out)?;
    Ok(Value::Object(out))
}

const OWNER_REFERENCE: Schema = &[
    (5, "apiVersion", Kind::Str),
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: Schema = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (8, "creationTimestamp", Kind::Time),
    (11, "labels", Kind::Map),
    (12, "annotations", Kind::Map),
    (13, "ownerReferences", Kind::Msgs(OWNER_REFERENCE)),
    (14, "finalizers", Kind::Strs),
];
const LABEL_SELECTOR: Schema = &[
    (1, "matchLabels", Kind::Map),
    (
        2,
        "matchExpressions",
        Kind::Msgs(&[
            (1, "key", Kind::Str),
            (2, "operator", Kind::Str),
            (3, "values", Kind::Strs),
        ]),
    ),
];
const LOCAL_REF: Schema = &[(1, "name", Kind::Str)];
const KEY_SELECTOR: Schema = &[
    (1, "", Kind::Inline(LOCAL_REF)),
    (2, "key", Kind::Str),
    (3, "optional", Kind::Bool),
];
const ENV_VAR: Schema = &[
    (1, "name", Kind::Str),
    (2, "value", Kind::Str),
    (
        3,
        "valueFrom",
        Kind::Msg(&[
            (3, "configMapKeyRef", Kind::Msg(KEY_SELECTOR)),
            (4, "secretKeyRef", Kind::Msg(KEY_SELECTOR)),
        ]),
    ),
];
const CONTAINER: Schema = &[
    (1, "name", Kind::Str),
    (2, "image", Kind::Str),
    (3, "command", Kind::Strs),
    (4, "args", Kind::Strs),
    (5, "workingDir", Kind::Str),
    (
        6,
        "ports",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "hostPort", Kind::Int),
            (3, "containerPort", Kind::Int),
            (4, "protocol", Kind::Str),
        ]),
    ),
    (7, "env", Kind::Msgs(ENV_VAR)),
    (
        8,
        "resources",
        Kind::Msg(&[
            (1, "limits", Kind::MapQuantity),
            (2, "requests", Kind::MapQuantity),
        ]),
    ),
    (
        9,
        "volumeMounts",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "readOnly", Kind::Bool),
            (3, "mountPath", Kind::Str),
            (4, "subPath", Kind::Str),
        ]),
    ),
    (13, "terminationMessagePath", Kind::Str),
    (14, "imagePullPolicy", Kind::Str),
    (16, "stdin", Kind::Bool),
    (17, "stdinOnce", Kind::Bool),
    (18, "tty", Kind::Bool),
    (20, "terminationMessagePolicy", Kind::Str),
];
const POD_SPEC: Schema = &[
    (2, "containers", Kind::Msgs(CONTAINER)),
    (20, "initContainers", Kind::Msgs(CONTAINER)),
    (3, "restartPolicy", Kind::Str),
    (4, "terminationGracePeriodSeconds", Kind::IntPtr),
    (5, "activeDeadlineSeconds", Kind::IntPtr),
    (6, "dnsPolicy", Kind::Str),
    (7, "nodeSelector", Kind::Map),
    (8, "serviceAccountName", Kind::Str),
    (10, "nodeName", Kind::Str),
    (11, "hostNetwork", Kind::Bool),
    (15, "imagePullSecrets", Kind::Msgs(LOCAL_REF)),
    (16, "hostname", Kind::Str),
    (17, "subdomain", Kind::Str),
    (19, "schedulerName", Kind::Str),
    (24, "priorityClassName", Kind::Str),
    (29, "runtimeClassName", Kind::Str),
];
const POD_TEMPLATE: Schema = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(POD_SPEC)),
];
const DEPLOYMENT_SPEC: Schema = &[
    (1, "replicas", Kind::IntPtr),
    (2, "selector", Kind::Msg(LABEL_SELECTOR)),
    (3, "template", Kind::Msg(POD_TEMPLATE)),
    (
        4,
        "strategy",
        Kind::Msg(&[
            (1, "type", Kind::Str),
            (
                2,
                "rollingUpdate",
                Kind::Msg(&[
                    (1, "maxUnavailable", Kind::IntOrString),
                    (2, "maxSurge", Kind::IntOrString),
                ]),
            ),
        ]),
    ),
    (5, "minReadySeconds", Kind::Int),
    (6, "revisionHistoryLimit", Kind::IntPtr),
    (7, "paused", Kind::Bool),
    (9, "progressDeadlineSeconds", Kind::IntPtr),
];
const JOB_SPEC: Schema = &[
    (1, "parallelism", Kind::IntPtr),
    (2, "completions", Kind::IntPtr),
    (3, "activeDeadlineSeconds", Kind::IntPtr),
    (4, "selector", Kind::Msg(LABEL_SELECTOR)),
    (5, "manualSelector", Kind::Bool),
    (6, "template", Kind::Msg(POD_TEMPLATE)),
    (7, "backoffLimit", Kind::IntPtr),
    (8, "ttlSecondsAfterFinished", Kind::IntPtr),
    (9, "completionMode", Kind::Str),
    (10, "suspend", Kind::Bool),
];
const SERVICE_SPEC: Schema = &[
    (
        1,
        "ports",
        Kind::Msgs(&[
            (1, "name", Kind::Str),
            (2, "protocol", Kind::Str),
            (3, "port", Kind::Int),
            (4, "targetPort", Kind::IntOrString),
            (5, "nodePort", Kind::Int),
        ]),
    ),
    (2, "selector", Kind::Map),
    (3, "clusterIP", Kind::Str),
    (4, "type", Kind::Str),
    (5, "externalIPs", Kind::Strs),
    (7, "sessionAffinity", Kind::Str),
    (10, "externalName", Kind::Str),
    (18, "clusterIPs", Kind::Strs),
];
const POLICY_RULE: Schema = &[
    (1, "verbs", Kind::Strs),
    (2, "apiGroups", Kind::Strs),
    (3, "resources", Kind::Strs),
    (4, "resourceNames", Kind::Strs),
    (5, "nonResourceURLs", Kind::Strs),
];
const BINDING: Schema = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (
        2,
        "subjects",
        Kind::Msgs(&[
            (1, "kind", Kind::Str),
            (2, "apiGroup", Kind::Str),
            (3, "name", Kind::Str),
            (4, "namespace", Kind::Str),
        ]),
    ),
    (
        3,
        "roleRef",
        Kind::Msg(&[
            (1, "apiGroup", Kind::Str),
            (2, "kind", Kind::Str),
            (3, "name", Kind::Str),
        ]),
    ),
];

const RESOURCE_ATTRIBUTES: Schema = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
];
const NON_RESOURCE_ATTRIBUTES: Schema = &[(1, "path", Kind::Str), (2, "verb", Kind::Str)];
const SSAR_SPEC: Schema = &[
    (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
];
const SAR_SPEC: Schema = &[
    (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Kind::Str),
    (4, "groups", Kind::Strs),
    (6, "uid", Kind::Str),
];
const BOUND_REF: Schema = &[
    (1, "kind", Kind::Str),
    (2, "apiVersion", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
];
const DELETE_OPTIONS: Schema = &[
    (1, "gracePeriodSeconds", Kind::IntPtr),
    (
        2,
        "preconditions",
        Kind::Msg(&[(1, "uid", Kind::Str), (2, "resourceVersion", Kind::Str)]),
    ),
    (3, "orphanDependents", Kind::Bool),
    (4, "propagationPolicy", Kind::Str),
    (5, "dryRun", Kind::Strs),
];

/// The schema of a top-level kind kubectl sends as protobuf.
fn schema_of(kind: &str) -> Option<Schema> {
    const META: (u64, &str, Kind) = (1, "metadata", Kind::Msg(OBJECT_META));
    Some(match kind {
        "SelfSubjectAccessReview" => &[META, (2, "spec", Kind::Msg(SSAR_SPEC))],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            &[META, (2, "spec", Kind::Msg(SAR_SPEC))]
        }
        "SelfSubjectRulesReview" => &[META, (2, "spec", Kind::Msg(&[(1, "namespace", Kind::Str)]))],
        "SelfSubjectReview" => &[META],
        "TokenRequest" => &[
            META,
            (
                2,
                "spec",
                Kind::Msg(&[
                    (1, "audiences", Kind::Strs),
                    (4, "expirationSeconds", Kind::IntPtr),
                    (3, "boundObjectRef", Kind::Msg(BOUND_REF)),
                ]),
            ),
        ],
        "Eviction" => &[META, (2, "deleteOptions", Kind::Msg(DELETE_OPTIONS))],
        "DeleteOptions" => DELETE_OPTIONS,
        "ConfigMap" => &[
            META,
            (2, "data", Kind::Map),
            (3, "binaryData", Kind::MapBytes),
            (4, "immutable", Kind::Bool),
        ],
        "Secret" => &[
            META,
            (2, "data", Kind::MapBytes),
            (3, "type", Kind::Str),
            (4, "stringData", Kind::Map),
            (5, "immutable", Kind::Bool),
        ],
        "Namespace" => &[
            META,
            (2, "spec", Kind::Msg(&[(1, "finalizers", Kind::Strs)])),
        ],
        "ServiceAccount" => &[
            META,
            (3, "imagePullSecrets", Kind::Msgs(LOCAL_REF)),
            (4, "automountServiceAccountToken", Kind::Bool),
        ],
        "Deployment" => &[META, (2, "spec", Kind::Msg(DEPLOYMENT_SPEC))],
        "Job" => &[META, (2, "spec", Kind::Msg(JOB_SPEC))],
        "CronJob" => &[
            META,
            (
                2,
                "spec",
                Kind::Msg(&[
                    (1, "schedule", Kind::Str),
                    (8, "timeZone", Kind::Str),
                    (2, "startingDeadlineSeconds", Kind::IntPtr),
                    (3, "concurrencyPolicy", Kind::Str),
                    (4, "suspend", Kind::Bool),
                    (
                        5,
                        "jobTemplate",
                        Kind::Msg(&[
                            (1, "metadata", Kind::Msg(OBJECT_META)),
                            (2, "spec", Kind::Msg(JOB_SPEC)),
                        ]),
                    ),
                    (6, "successfulJobsHistoryLimit", Kind::IntPtr),
                    (7, "failedJobsHistoryLimit", Kind::IntPtr),
                ]),
            ),
        ],
        "Service" => &[META, (2, "spec", Kind::Msg(SERVICE_SPEC))],
        "Pod" => &[META, (2, "spec", Kind::Msg(POD_SPEC))],
        "Role" => &[META, (2, "rules", Kind::Msgs(POLICY_RULE))],
        "ClusterRole" => &[
            META,
            (2, "rules", Kind::Msgs(POLICY_RULE)),
            (
                3,
                "aggregationRule",
                Kind::Msg(&[(1, "clusterRoleSelectors", Kind::Msgs(LABEL_SELECTOR))]),
            ),
        ],
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "PriorityClass" => &[
            META,
            (2, "value", Kind::Int),
            (3, "globalDefault", Kind::Bool),
            (4, "description", Kind::Str),
            (5, "preemptionPolicy", Kind::Str),
        ],
        "ResourceQuota" => &[
            META,
            (
                2,
                "spec",
                Kind::Msg(&[(1, "hard", Kind::MapQuantity), (2, "scopes", Kind::Strs)]),
            ),
        ],
        "PodDisruptionBudget" => &[
            META,
            (
                2,
                "spec",
                Kind::Msg(&[
                    (1, "minAvailable", Kind::IntOrString),
                    (2, "selector", Kind::Msg(LABEL_SELECTOR)),
                    (3, "maxUnavailable", Kind::IntOrString),
                    (4, "unhealthyPodEvictionPolicy", Kind::Str),
                ]),
            ),
        ],
        _ => return None,
    })
}

/// Decodes a protobuf request body into JSON (415 for kinds not supported).
pub fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    let raw = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut object: &[u8] = &[];
    for (number, field) in fields(raw)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                for (n, f) in fields(type_meta)? {
                    match n {
                        1 => api_version = string(&f),
                        2 => kind = string(&f),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => object = b,
            _ => {}
        }
    }
    let Some(schema) = schema_of(&kind) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (protobuf {kind} is not supported)"
        )));
    };
    let mut value = decode_message(object, schema)?;
    value["apiVersion"] = json!(api_version);
    value["kind"] = json!(kind);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let mut attrs = Vec::new();
        field(&mut attrs, 1, b"default");
        field(&mut attrs, 2, b"create");
        field(&mut attrs, 5, b"pods");
        let mut spec = Vec::new();
        field(&mut spec, 1, &attrs);
        let mut obj = Vec::new();
        field(&mut obj, 2, &spec);
        let mut type_meta = Vec::new();
        field(&mut type_meta, 1, b"authorization.k8s.io/v1");
        field(&mut type_meta, 2, b"SelfSubjectAccessReview");
        let mut body = MAGIC.to_vec();
        field(&mut body, 1, &type_meta);
        field(&mut body, 2, &obj);
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "create", "resource": "pods"})
        );
    }

    #[test]
    fn token_requests_and_unknown_kinds() {
        let mut spec = Vec::new();
        field(&mut spec, 1, b"aud");
        spec.extend_from_slice(&[4 << 3, 0xe0, 0x1c]);
        let mut obj = Vec::new();
        field(&mut obj, 2, &spec);
        let mut type_meta = Vec::new();
        field(&mut type_meta, 2, b"TokenRequest");
        let mut body = MAGIC.to_vec();
        field(&mut body, 1, &type_meta);
        field(&mut body, 2, &obj);
        let v = decode(&body).unwrap();
        assert_eq!(v["spec"]["audiences"], json!(["aud"]));
        assert_eq!(v["spec"]["expirationSeconds"], 3680);
        let mut tm = Vec::new();
        field(&mut tm, 2, b"Pod");
        let mut pod = MAGIC.to_vec();
        field(&mut pod, 1, &tm);
        let mut tm = Vec::new();
        field(&mut tm, 2, b"Widget");
        let mut pod = MAGIC.to_vec();
        field(&mut pod, 1, &tm);
        assert!(matches!(
            decode(&pod),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(decode(b"nope").is_err());
    }

    fn envelope(kind: &[u8], obj: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        field(&mut type_meta, 2, kind);
        let mut body = MAGIC.to_vec();
        field(&mut body, 1, &type_meta);
        field(&mut body, 2, obj);
        body
    }

    #[test]
    fn configmaps_secrets_and_int_or_string() {
        let mut entry = Vec::new();
        field(&mut entry, 1, b"k");
        field(&mut entry, 2, b"v");
        let mut meta = Vec::new();
        field(&mut meta, 1, b"cm");
        let mut obj = Vec::new();
        field(&mut obj, 1, &meta);
        field(&mut obj, 2, &entry);
        let v = decode(&envelope(b"ConfigMap", &obj)).unwrap();
        assert_eq!(v["metadata"]["name"], "cm");
        assert_eq!(v["data"], json!({"k": "v"}));
        let mut secret = Vec::new();
        field(&mut secret, 2, &entry);
        let v = decode(&envelope(b"Secret", &secret)).unwrap();
        assert_eq!(v["data"]["k"], "dg==");
        // a Service port with targetPort as an int (type 0, intVal 8080)
        let mut target = vec![1 << 3, 0, 2 << 3];
        target.extend_from_slice(&[0x90, 0x3f]);
        let mut port = Vec::new();
        port.extend_from_slice(&[3 << 3, 80]);
        field(&mut port, 4, &target);
        let mut spec = Vec::new();
        field(&mut spec, 1, &port);
        let mut svc = Vec::new();
        field(&mut svc, 2, &spec);
        let v = decode(&envelope(b"Service", &svc)).unwrap();
        assert_eq!(
            v["spec"]["ports"][0],
            json!({"port": 80, "targetPort": 8080})
        );
    }
}
