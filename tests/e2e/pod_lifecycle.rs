//! A wasm pod's life as `kubectl` shows it: limits (OOMKilled, a busy loop
//! held to its cpu limit and stopped within its grace period), init
//! containers in order with a native sidecar, probes that restart and gate
//! readiness, env and mounted ConfigMap/Secret/downwardAPI files that follow
//! updates, and restart back-off that doubles up to its ceiling.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Cluster;

fn pod_field(cluster: &Cluster, pod: &str, jsonpath: &str) -> String {
    cluster.jsonpath(&["pod", pod], jsonpath)
}

/// A jsonpath over the Events about `object` (and `reason`, when given).
fn events(cluster: &Cluster, object: &str, reason: Option<&str>, jsonpath: &str) -> String {
    let selector = match reason {
        Some(r) => format!("involvedObject.name={object},reason={r}"),
        None => format!("involvedObject.name={object}"),
    };
    cluster.jsonpath(&["events", "--field-selector", &selector], jsonpath)
}

fn wait_phase(cluster: &Cluster, pod: &str, phase: &str, timeout: Duration) {
    cluster.wait_for(&format!("{pod} to be {phase}"), timeout, || {
        pod_field(cluster, pod, "{.status.phase}") == phase
    });
}

fn ready(cluster: &Cluster, pod: &str) -> bool {
    pod_field(
        cluster,
        pod,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    ) == "True"
}

/// A pod's `kubectl exec` output, or None when the command failed.
fn exec(cluster: &Cluster, pod: &str, command: &[&str]) -> Option<String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(command);
    let out = cluster.kubectl_output(&args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A pod's HTTP answer through the API server's `pods/proxy`.
fn proxy_get(cluster: &Cluster, pod: &str, port: u16, path: &str) -> Option<String> {
    let url = format!("/api/v1/namespaces/default/pods/{pod}:{port}/proxy{path}");
    let out = cluster.kubectl_output(&["get", "--raw", &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A metrics.k8s.io cpu quantity (`123456789n`, `15m`, `1`) in cores.
fn cores(quantity: &str) -> Option<f64> {
    let (digits, scale) = match quantity.as_bytes().last()? {
        b'n' => (&quantity[..quantity.len() - 1], 1e-9),
        b'u' => (&quantity[..quantity.len() - 1], 1e-6),
        b'm' => (&quantity[..quantity.len() - 1], 1e-3),
        _ => (quantity, 1.0),
    };
    digits.parse::<f64>().ok().map(|n| n * scale)
}

#[test]
fn memory_bomb_is_oom_killed_and_a_busy_loop_is_held_to_its_cpu_limit() {
    let cluster = Cluster::start();
    cluster.kubectl(&["apply", "-f", "samples/extra/memory-bomb.yaml"]);
    wait_phase(&cluster, "memory-bomb", "Failed", Duration::from_secs(60));
    let terminated = |f: &str| {
        pod_field(
            &cluster,
            "memory-bomb",
            &format!("{{.status.containerStatuses[0].state.terminated.{f}}}"),
        )
    };
    assert_eq!(terminated("reason"), "OOMKilled");
    assert_eq!(terminated("exitCode"), "137");
    assert!(terminated("message").contains("memory limit"));
    let logs = cluster.kubectl(&["logs", "memory-bomb"]);
    assert!(logs.contains("memory-bomb: holding"), "{logs}");
    let table = cluster.kubectl(&["get", "pod", "memory-bomb"]);
    assert!(table.contains("OOMKilled"), "{table}");

    // 100m: the metrics API, sampled by the node, sees about a tenth of a core.
    cluster.kubectl(&["apply", "-f", "samples/extra/busy-loop.yaml"]);
    wait_phase(&cluster, "busy-loop", "Running", Duration::from_secs(60));
    let running_since = Instant::now();
    let metrics = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy-loop";
    let mut usage = None;
    cluster.wait_for("busy-loop's cpu usage", Duration::from_secs(60), || {
        if running_since.elapsed() < Duration::from_secs(4) {
            return false;
        }
        let out = cluster.kubectl_output(&["get", "--raw", metrics]);
        let pod: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        usage = pod["containers"][0]["usage"]["cpu"]
            .as_str()
            .and_then(cores)
            .filter(|c| *c > 0.0);
        usage.is_some()
    });
    let usage = usage.unwrap_or_default();
    assert!(
        (0.03..=0.2).contains(&usage),
        "a guest limited to 100m used {usage:.3} cores"
    );

    // The guest never yields, yet it is gone within its 5 s grace period.
    let asked = Instant::now();
    cluster.kubectl(&["delete", "pod", "busy-loop", "--wait=true", "--timeout=30s"]);
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "a busy loop took {took:?} to stop with a 5 s grace period"
    );
}

const ORDERED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  restartPolicy: Never
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    image: samples/wasm/toolbox.wasm
    args: ["write", "/work/a", "first-ran"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: samples/wasm/toolbox.wasm
    args: ["test", "-e", "/work/a"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: ticker
    image: samples/wasm/toolbox.wasm
    restartPolicy: Always
    args: ["tick", "/work/ticks", "100"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: pause
    image: samples/wasm/toolbox.wasm
    args: ["sleep", "3"]
  containers:
  - name: main
    image: samples/wasm/toolbox.wasm
    args: ["cat", "/work/a", "/work/ticks"]
    volumeMounts: [{name: work, mountPath: /work}]
"#;

#[test]
fn init_containers_run_in_order_beside_a_native_sidecar() {
    let cluster = Cluster::start();
    cluster.apply(ORDERED);
    // kubectl counts finished init containers and started sidecars.
    cluster.wait_for(
        "Init:3/4 while pause sleeps",
        Duration::from_secs(60),
        || {
            cluster
                .kubectl(&["get", "pod", "ordered"])
                .contains("Init:3/4")
        },
    );
    let sidecar = pod_field(
        &cluster,
        "ordered",
        "{.status.initContainerStatuses[?(@.name==\"ticker\")].state.running.startedAt}",
    );
    assert!(!sidecar.is_empty(), "the sidecar is running during init");
    // The main container ran after every init container and saw the
    // sidecar's file; the sidecar was then stopped so the pod could finish.
    wait_phase(&cluster, "ordered", "Succeeded", Duration::from_secs(60));
    let logs = cluster.kubectl(&["logs", "ordered", "-c", "main"]);
    assert!(logs.contains("first-ran"), "{logs}");
    assert!(logs.contains("tick"), "{logs}");
    for init in ["first", "second", "pause"] {
        let reason = pod_field(
            &cluster,
            "ordered",
            &format!(
                "{{.status.initContainerStatuses[?(@.name==\"{init}\")].state.terminated.reason}}"
            ),
        );
        assert_eq!(reason, "Completed", "init container {init}");
    }
}

#[test]
fn web_and_log_processor_share_an_empty_dir() {
    let cluster = Cluster::start();
    cluster.kubectl(&["apply", "-f", "samples/manifests/web-sidecar.yaml"]);
    let mut pod = String::new();
    cluster.wait_for("a web pod to be Ready", Duration::from_secs(60), || {
        pod = cluster.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
        !pod.is_empty() && ready(&cluster, &pod)
    });
    for path in ["/", "/healthz", "/", "/missing"] {
        assert!(proxy_get(&cluster, &pod, 8080, path).is_some() || path == "/missing");
    }
    // The sidecar tails the access log the web container writes.
    cluster.wait_for(
        "log-processor to count the requests",
        Duration::from_secs(30),
        || {
            let logs = cluster.kubectl(&["logs", &pod, "-c", "log-processor", "--tail", "1"]);
            logs.lines()
                .last()
                .and_then(|l| l.strip_prefix("log-processor: "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 3)
        },
    );
}

const PROBED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probed, labels: {app: probed}}
spec:
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: app
    image: samples/wasm/http-echo.wasm
    ports: [{name: http, containerPort: 8080}]
    env: [{name: UNHEALTHY_FILE, value: /state/unhealthy}]
    volumeMounts: [{name: state, mountPath: /state}]
    readinessProbe:
      exec: {command: ["test", "-e", "/state/ready"]}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata: {name: probed}
spec:
  selector: {app: probed}
  ports: [{port: 80, targetPort: http}]
"#;

#[test]
fn probes_gate_readiness_and_endpoints_and_restart_an_unhealthy_container() {
    let cluster = Cluster::start();
    cluster.apply(PROBED);
    wait_phase(&cluster, "probed", "Running", Duration::from_secs(60));
    let ready_ips = || cluster.jsonpath(&["endpoints", "probed"], "{.subsets[*].addresses[*].ip}");
    let not_ready_ips = || {
        cluster.jsonpath(
            &["endpoints", "probed"],
            "{.subsets[*].notReadyAddresses[*].ip}",
        )
    };
    // Not ready until the readiness file exists: listed as not ready.
    let ip = pod_field(&cluster, "probed", "{.status.podIP}");
    cluster.wait_for(
        "the pod to be a not-ready endpoint",
        Duration::from_secs(30),
        || not_ready_ips() == ip,
    );
    assert!(!ready(&cluster, "probed"));
    assert!(exec(&cluster, "probed", &["touch", "/state/ready"]).is_some());
    cluster.wait_for("readiness to pass", Duration::from_secs(30), || {
        ready(&cluster, "probed") && ready_ips() == ip
    });
    assert!(exec(&cluster, "probed", &["rm", "/state/ready"]).is_some());
    cluster.wait_for("readiness to fail again", Duration::from_secs(30), || {
        !ready(&cluster, "probed") && not_ready_ips() == ip
    });

    // /healthz answers 503 once the file exists: liveness restarts the container.
    assert!(exec(&cluster, "probed", &["touch", "/state/unhealthy"]).is_some());
    cluster.wait_for("a liveness restart", Duration::from_secs(60), || {
        pod_field(
            &cluster,
            "probed",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
    let reasons = events(&cluster, "probed", None, "{.items[*].reason}");
    assert!(reasons.contains("Unhealthy"), "{reasons}");
    assert!(reasons.contains("Killing"), "{reasons}");
    let messages = events(&cluster, "probed", Some("Unhealthy"), "{.items[*].message}");
    assert!(messages.contains("Liveness probe failed"), "{messages}");
    assert!(messages.contains("Readiness probe failed"), "{messages}");
}

const CONFIGURED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  app.conf: "greeting=first\n"
  MODE: fast
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {token: s3cr3t, password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: configured, labels: {tier: backend}}
spec:
  volumes:
  - name: config
    configMap: {name: app-config, items: [{key: app.conf, path: app.conf}]}
  - name: secret
    secret: {secretName: app-secret, defaultMode: 0400}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  containers:
  - name: app
    image: samples/wasm/http-echo.wasm
    ports: [{containerPort: 8080}]
    envFrom: [{configMapRef: {name: app-config}}]
    env:
    - {name: CONFIG_FILE, value: /config/app.conf}
    - {name: SECRET_TOKEN, valueFrom: {secretKeyRef: {name: app-secret, key: token}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: DERIVED, value: "$(MODE)-mode"}
    resources: {limits: {memory: 64Mi}}
    volumeMounts:
    - {name: config, mountPath: /config, readOnly: true}
    - {name: secret, mountPath: /secret, readOnly: true}
    - {name: info, mountPath: /info}
"#;

#[test]
fn env_and_mounted_config_and_secrets_follow_updates() {
    let cluster = Cluster::start();
    cluster.apply(CONFIGURED);
    wait_phase(&cluster, "configured", "Running", Duration::from_secs(60));
    let env = exec(
        &cluster,
        "configured",
        &[
            "printenv",
            "MODE",
            "SECRET_TOKEN",
            "POD_NAME",
            "LIMIT",
            "DERIVED",
        ],
    )
    .unwrap_or_default();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        ["fast", "s3cr3t", "configured", "64", "fast-mode"],
        "{env}"
    );
    let mut config = String::new();
    cluster.wait_for("the app to answer /config", Duration::from_secs(30), || {
        config = proxy_get(&cluster, "configured", 8080, "/config").unwrap_or_default();
        !config.is_empty()
    });
    let answer: Value = serde_json::from_str(&config).expect("config json");
    assert_eq!(answer["config"], "greeting=first\n", "{config}");
    assert_eq!(answer["secretTokenSet"], true, "{config}");
    let cat = |path: &str| exec(&cluster, "configured", &["cat", path]).unwrap_or_default();
    assert_eq!(cat("/secret/password"), "hunter2");
    assert!(cat("/info/labels").contains("tier=\"backend\""));
    // readOnly mounts refuse writes.
    assert!(exec(&cluster, "configured", &["write", "/config/x", "y"]).is_none());

    cluster.kubectl(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"app.conf":"greeting=second\n"}}"#,
    ]);
    cluster.kubectl(&[
        "patch",
        "secret",
        "app-secret",
        "-p",
        r#"{"stringData":{"password":"correct-horse"}}"#,
    ]);
    cluster.wait_for(
        "the mounted files to change",
        Duration::from_secs(60),
        || {
            cat("/config/app.conf") == "greeting=second\n"
                && cat("/secret/password") == "correct-horse"
        },
    );
    let config = proxy_get(&cluster, "configured", 8080, "/config").unwrap_or_default();
    assert!(config.contains("greeting=second"), "{config}");
    cluster.kubectl(&["label", "pod", "configured", "tier=frontend", "--overwrite"]);
    cluster.wait_for(
        "the downward API file to change",
        Duration::from_secs(60),
        || cat("/info/labels").contains("tier=\"frontend\""),
    );
}

#[test]
fn restart_back_off_doubles_up_to_its_ceiling() {
    let cluster = Cluster::start_with(&[
        "--restart-backoff-initial",
        "1s",
        "--restart-backoff-max",
        "4s",
    ]);
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: crasher
    image: samples/wasm/crasher.wasm
"#,
    );
    // When each restart count was first seen.
    let started = Instant::now();
    let mut seen: Vec<Duration> = Vec::new();
    let mut message = String::new();
    cluster.wait_for("five restarts", Duration::from_secs(90), || {
        let status = pod_field(
            &cluster,
            "crasher",
            "{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.message}",
        );
        let (count, waiting) = status.split_once(' ').unwrap_or((status.as_str(), ""));
        if let Ok(n) = count.parse::<usize>() {
            while seen.len() < n {
                seen.push(started.elapsed());
            }
        }
        if waiting.contains("back-off") {
            message = waiting.to_string();
        }
        seen.len() >= 5
    });
    let gaps: Vec<f64> = seen
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Restarts 1 → 5 wait 2, 4, 4, 4 s: doubled once, then held at the ceiling.
    assert!(gaps[1] > gaps[0] * 1.4, "back-off did not grow: {gaps:?}");
    assert!(
        gaps[2..].iter().all(|g| *g < 6.0),
        "back-off passed its 4 s ceiling: {gaps:?}"
    );
    assert!(message.contains("restarting failed container"), "{message}");

    // The logs of the run before, and kubectl's log flags.
    let previous = cluster.kubectl(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("crasher: starting"), "{previous}");
    let stamped = cluster.kubectl(&["logs", "crasher", "--previous", "--timestamps"]);
    let first = stamped.lines().next().unwrap_or_default();
    let stamp = first.split_whitespace().next().unwrap_or_default();
    assert!(
        stamp.starts_with("20") && stamp.contains('T') && stamp.ends_with('Z'),
        "{first}"
    );
    let tail = cluster.kubectl(&["logs", "crasher", "--previous", "--tail", "1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let recent = cluster.kubectl(&["logs", "crasher", "--previous", "--since", "10m"]);
    assert!(recent.contains("crasher: starting"), "{recent}");
}

fn graceful(host_dir: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: out, hostPath: {{path: "{host_dir}", type: Directory}}}}]
  containers:
  - name: app
    image: samples/wasm/http-echo.wasm
    ports: [{{name: http, containerPort: 8080}}]
    volumeMounts: [{{name: out, mountPath: /out}}]
    startupProbe:
      exec: {{command: ["test", "-e", "/out/started"]}}
      periodSeconds: 1
      failureThreshold: 300
    readinessProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
    lifecycle:
      preStop:
        exec: {{command: ["write", "/out/prestop", "ran"]}}
"#
    )
}

#[test]
fn startup_probe_holds_readiness_and_pre_stop_runs_before_the_stop() {
    let host = tempfile::tempdir().expect("host dir");
    let host_dir = host.path().display().to_string();

    // Pod Security's baseline level refuses hostPath: the namespace opts out.
    let privileged = [
        "label",
        "namespace",
        "default",
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ];
    // hostPath is refused unless the node allows it.
    let strict = Cluster::start();
    strict.kubectl(&privileged);
    strict.apply(&graceful(&host_dir));
    strict.wait_for("the hostPath refusal", Duration::from_secs(60), || {
        events(
            &strict,
            "graceful",
            Some("FailedMount"),
            "{.items[*].message}",
        )
        .contains("not allowed on this node")
    });
    assert_eq!(pod_field(&strict, "graceful", "{.status.phase}"), "Pending");
    drop(strict);

    let cluster = Cluster::start_with(&["--allow-host-path"]);
    cluster.kubectl(&privileged);
    cluster.apply(&graceful(&host_dir));
    wait_phase(&cluster, "graceful", "Running", Duration::from_secs(60));
    // The startup probe cannot pass before the file exists, and holds
    // readiness (a tcpSocket probe that would pass) off until it does.
    let started = || {
        pod_field(
            &cluster,
            "graceful",
            "{.status.containerStatuses[0].started}",
        )
    };
    assert_eq!(started(), "false");
    assert!(!ready(&cluster, "graceful"));
    std::fs::write(host.path().join("started"), "").expect("write on the host");
    cluster.wait_for("startup, then readiness", Duration::from_secs(30), || {
        started() == "true" && ready(&cluster, "graceful")
    });

    // Delete: the preStop hook writes its file, then the container stops, well within the grace period.
    let asked = Instant::now();
    cluster.kubectl(&["delete", "pod", "graceful", "--wait=true", "--timeout=30s"]);
    let took = asked.elapsed();
    let hook = std::fs::read_to_string(host.path().join("prestop")).unwrap_or_default();
    assert_eq!(hook.trim(), "ran", "the preStop hook's file");
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
}

#[test]
fn the_node_ends_pods_that_outgrow_an_empty_dir_or_outlive_their_deadline() {
    let cluster = Cluster::start();
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hoarder}
spec:
  volumes: [{name: scratch, emptyDir: {sizeLimit: 1Mi}}]
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
    volumeMounts: [{name: scratch, mountPath: /scratch}]
"#,
    );
    wait_phase(&cluster, "hoarder", "Running", Duration::from_secs(60));
    // Under the limit nothing happens.
    assert!(
        exec(
            &cluster,
            "hoarder",
            &["write", "/scratch/small", "a few bytes"]
        )
        .is_some()
    );
    // 2 MiB land in the volume (written on the node, where the volume lives).
    let pods = cluster.dir().join("node/pods");
    let scratch = std::fs::read_dir(&pods)
        .expect("pod directories")
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("default_hoarder_")
        })
        .map(|e| e.path().join("volumes/scratch"))
        .expect("the pod's directory");
    assert!(
        scratch.join("small").exists(),
        "the volume at {}",
        scratch.display()
    );
    std::fs::write(scratch.join("big"), vec![7u8; 2 << 20]).expect("fill the volume");
    wait_phase(&cluster, "hoarder", "Failed", Duration::from_secs(30));
    assert_eq!(
        pod_field(&cluster, "hoarder", "{.status.reason}"),
        "Evicted"
    );
    let message = pod_field(&cluster, "hoarder", "{.status.message}");
    assert!(
        message.contains("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\""),
        "{message}"
    );
    let kinds = events(&cluster, "hoarder", Some("Evicted"), "{.items[*].type}");
    assert_eq!(kinds, "Warning");
    assert_eq!(
        pod_field(
            &cluster,
            "hoarder",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    // activeDeadlineSeconds: the node fails the pod once it has been active that long.
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 2
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
"#,
    );
    wait_phase(&cluster, "deadline", "Failed", Duration::from_secs(30));
    assert_eq!(
        pod_field(&cluster, "deadline", "{.status.reason}"),
        "DeadlineExceeded"
    );
    let message = pod_field(&cluster, "deadline", "{.status.message}");
    assert!(
        message.contains("longer than the specified deadline"),
        "{message}"
    );
}

#[test]
fn restart_policies_for_init_and_regular_containers() {
    let cluster = Cluster::start_with(&["--restart-backoff-initial", "1s"]);
    let pod = |name: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  initContainers:\n  - name: check\n    image: samples/wasm/toolbox.wasm\n    args: [\"test\", \"-e\", \"/nowhere\"]\n  containers:\n  - name: main\n    image: samples/wasm/toolbox.wasm\n    args: [\"true\"]\n"
        )
    };
    cluster.apply(&pod("once", "Never"));
    cluster.apply(&pod("again", "Always"));
    // Never: the pod fails, its main container never ran.
    wait_phase(&cluster, "once", "Failed", Duration::from_secs(60));
    let table = cluster.kubectl(&["get", "pod", "once"]);
    assert!(table.contains("Init:Error"), "{table}");
    assert_eq!(
        pod_field(
            &cluster,
            "once",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    // Always: the init container is retried with back-off, main still waits.
    cluster.wait_for("Init:CrashLoopBackOff", Duration::from_secs(60), || {
        cluster
            .kubectl(&["get", "pod", "again"])
            .contains("Init:CrashLoopBackOff")
    });
    cluster.wait_for(
        "the init container to restart",
        Duration::from_secs(30),
        || {
            pod_field(
                &cluster,
                "again",
                "{.status.initContainerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .is_ok_and(|n| n >= 1)
        },
    );
    assert_eq!(pod_field(&cluster, "again", "{.status.phase}"), "Pending");

    // OnFailure: a failing container is restarted, a succeeding one is not.
    let simple = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: OnFailure\n  containers:\n  - name: app\n    image: {image}\n"
        )
    };
    cluster.apply(&simple("flaky", "samples/wasm/crasher.wasm"));
    cluster.apply(&simple("fine", "samples/wasm/hello.wasm"));
    wait_phase(&cluster, "fine", "Succeeded", Duration::from_secs(60));
    cluster.wait_for("flaky to be restarted", Duration::from_secs(30), || {
        pod_field(
            &cluster,
            "flaky",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
    assert_eq!(
        pod_field(
            &cluster,
            "fine",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

/// A one-answer-per-connection HTTP server on loopback, standing in for the outside world.
fn outside_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\nfrom outside\n",
            );
        }
    });
    port
}

#[test]
fn outbound_network_is_denied_unless_the_pod_allows_it() {
    let port = outside_server();
    let cluster = Cluster::start();
    let pod = |name: &str, annotation: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{{annotation}}}\nspec:\n  containers:\n  - name: app\n    image: samples/wasm/http-echo.wasm\n    ports: [{{containerPort: 8080}}]\n"
        )
    };
    cluster.apply(&pod("closed", ""));
    cluster.apply(&pod("open", "skiff.dev/allow-outbound-network: \"true\""));
    let fetch = |pod: &str| -> Value {
        let mut answer = Value::Null;
        cluster.wait_for(&format!("{pod} to answer"), Duration::from_secs(60), || {
            let path = format!("/fetch/127.0.0.1:{port}/");
            answer = proxy_get(&cluster, pod, 8080, &path)
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            !answer.is_null()
        });
        answer
    };
    let closed = fetch("closed");
    assert!(closed["status"].is_null(), "{closed}");
    assert!(
        closed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Denied"),
        "{closed}"
    );
    let open = fetch("open");
    assert_eq!(open["status"], 200, "{open}");
    assert_eq!(open["body"], "from outside\n", "{open}");
}
