//! The HorizontalPodAutoscaler and PersistentVolumeClaims as a user sees
//! them: a Deployment of the cpu-burning busy-loop guest scales up under an
//! HPA aiming at 50% cpu, and a claim with no class gets the default
//! `local-path` class, is provisioned and Bound on the pod's node, holds
//! the directory the pod's volume shows, and takes its volume with it when
//! deleted; a pod whose claim is missing or Pending waits on the node with
//! FailedMount events and starts once the claim is Bound, on the volume's
//! directory.

use std::time::Duration;

use crate::harness::Cluster;

const BURNER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: burner}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: busy-loop
        image: samples/wasm/busy-loop.wasm
        env: [{name: REPORT_EVERY, value: "1000000000000"}]
        resources:
          requests: {cpu: 100m, memory: 16Mi}
          limits: {cpu: 200m, memory: 16Mi}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 4, periodSeconds: 5}]
    scaleDown:
      stabilizationWindowSeconds: 5
"#;

fn get(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let mut all: Vec<&str> = vec!["get"];
    all.extend_from_slice(args);
    let path = format!("jsonpath={path}");
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&cluster.kubectl_output(&all).stdout).into_owned()
}

#[test]
fn hpa_scales_a_busy_deployment_up() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(BURNER));

    let mut replicas = 0;
    cluster.wait_for(
        "the HPA to scale burner up",
        Duration::from_secs(90),
        || {
            replicas = get(&cluster, &["deployment", "burner"], "{.spec.replicas}")
                .parse()
                .unwrap_or(0);
            replicas >= 2
        },
    );
    assert!(replicas <= 3, "maxReplicas holds: {replicas}");

    let hpa = |path: &str| get(&cluster, &["hpa", "burner"], path);
    let desired: i32 = hpa("{.status.desiredReplicas}").parse().unwrap_or(0);
    assert!((2..=3).contains(&desired), "desiredReplicas {desired}");
    assert!(!hpa("{.status.lastScaleTime}").is_empty());
    let utilization: i32 = hpa("{.status.currentMetrics[0].resource.current.averageUtilization}")
        .parse()
        .unwrap_or(0);
    assert!(
        utilization > 55,
        "busy-loop burns more than the target: {utilization}%"
    );
    assert_eq!(
        hpa("{.status.conditions[?(@.type==\"ScalingActive\")].status}"),
        "True"
    );
    assert_eq!(
        hpa("{.status.conditions[?(@.type==\"AbleToScale\")].status}"),
        "True"
    );
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burner,reason=SuccessfulRescale",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("New size:"), "{events}");
    // The autoscaling/v1 view of the same object.
    let v1 = cluster.kubectl(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/burner",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).expect("v1 HPA json");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    assert!(
        v1["status"]["currentCPUUtilizationPercentage"].as_i64() > Some(55),
        "{v1}"
    );
}

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
    env:
    - {name: TICK_MS, value: "200"}
    - {name: STOP_FILE, value: /data/stop}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
"#;

#[test]
fn default_class_claim_is_provisioned_bound_and_mounted() {
    let cluster = Cluster::start();
    let class = || {
        get(
            &cluster,
            &["storageclass", "local-path"],
            "{.provisioner} {.volumeBindingMode} {.reclaimPolicy} {.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class}",
        )
    };
    let mut seen = String::new();
    cluster.wait_for("the local-path class", Duration::from_secs(30), || {
        seen = class();
        !seen.is_empty()
    });
    assert_eq!(
        seen,
        "skiff.dev/local-path WaitForFirstConsumer Delete true"
    );

    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(CLAIM));
    cluster.wait_for("the claim to be Bound", Duration::from_secs(60), || {
        get(&cluster, &["pvc", "data"], "{.status.phase}") == "Bound"
    });
    let claim = |path: &str| get(&cluster, &["pvc", "data"], path);
    assert_eq!(claim("{.spec.storageClassName}"), "local-path");
    assert_eq!(
        claim("{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"),
        "skiff-test"
    );
    assert_eq!(
        claim("{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"),
        "yes"
    );
    assert_eq!(claim("{.status.capacity.storage}"), "64Mi");
    let pv = claim("{.spec.volumeName}");
    assert!(pv.starts_with("pvc-"), "{pv}");
    let volume = |path: &str| get(&cluster, &["pv", &pv], path);
    assert_eq!(volume("{.status.phase}"), "Bound");
    assert_eq!(volume("{.spec.claimRef.name}"), "data");
    assert_eq!(
        volume("{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"),
        "skiff-test"
    );

    cluster.wait_for("the writer to run", Duration::from_secs(60), || {
        get(&cluster, &["pod", "writer"], "{.status.phase}") == "Running"
    });
    // The claim's directory on the node is what the pod sees at /data.
    let dir = cluster
        .dir()
        .join("node")
        .join(volume("{.spec.local.path}"));
    assert!(dir.is_dir(), "{} should exist", dir.display());
    std::fs::write(dir.join("stop"), b"").expect("write the stop file");
    cluster.wait_for(
        "the writer to see /data/stop",
        Duration::from_secs(30),
        || get(&cluster, &["pod", "writer"], "{.status.phase}") == "Succeeded",
    );
    let logs = cluster.kubectl(&["logs", "writer"]);
    assert!(logs.contains("stop file /data/stop found"), "{logs}");

    // Reclaim policy Delete: the provisioned volume goes with its claim.
    cluster.kubectl(&["delete", "pod", "writer", "--wait=false"]);
    cluster.kubectl(&["delete", "pvc", "data", "--wait=false"]);
    cluster.wait_for("the volume to be deleted", Duration::from_secs(30), || {
        let out = cluster.kubectl_output(&["get", "pv", &pv]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
}

const WAITER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: waiter}
spec:
  nodeName: skiff-test
  terminationGracePeriodSeconds: 1
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: late}
"#;

/// No class: no provisioner, bound as soon as a matching volume exists.
const LATE_CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: late}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
"#;

const LATE_VOLUME: &str = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: late-pv}
spec:
  storageClassName: ""
  capacity: {storage: 16Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  local: {path: volumes/static/late}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [skiff-test]}
"#;

#[test]
fn pod_waits_on_the_node_until_its_claim_is_bound() {
    let cluster = Cluster::start();
    let static_dir = cluster.dir().join("node/volumes/static/late");
    std::fs::create_dir_all(&static_dir).expect("volume dir");
    std::fs::write(static_dir.join("hello.txt"), "from the volume\n").expect("volume file");

    // Straight onto the node (no scheduler to hold it back): the claim is missing.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(WAITER));
    let failed_mounts = || {
        get(
            &cluster,
            &[
                "events",
                "--field-selector",
                "involvedObject.name=waiter,reason=FailedMount",
            ],
            "{.items[*].message}",
        )
    };
    cluster.wait_for(
        "a FailedMount event for the missing claim",
        Duration::from_secs(60),
        || failed_mounts().contains(r#"persistentvolumeclaim "late" not found"#),
    );
    let events = failed_mounts();
    assert!(
        events.contains("Unable to attach or mount volumes: unmounted volumes=[data]"),
        "{events}"
    );
    assert_eq!(
        get(&cluster, &["pod", "waiter"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        get(
            &cluster,
            &["pod", "waiter"],
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "ContainerCreating"
    );

    // The claim exists but nothing can bind it yet.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(LATE_CLAIM));
    cluster.wait_for(
        "a FailedMount event for the unbound claim",
        Duration::from_secs(60),
        || failed_mounts().contains(r#"persistentvolumeclaim "late" is not bound"#),
    );
    assert_eq!(
        get(&cluster, &["pvc", "late"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        get(&cluster, &["pod", "waiter"], "{.status.phase}"),
        "Pending"
    );

    // A matching volume: the claim is bound and the pod starts on its directory.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(LATE_VOLUME));
    cluster.wait_for("the claim to be Bound", Duration::from_secs(60), || {
        get(&cluster, &["pvc", "late"], "{.status.phase}") == "Bound"
    });
    cluster.wait_for("the waiter to run", Duration::from_secs(60), || {
        get(&cluster, &["pod", "waiter"], "{.status.phase}") == "Running"
    });
    let seen = cluster.kubectl(&["exec", "waiter", "--", "cat", "/data/hello.txt"]);
    assert_eq!(seen, "from the volume\n");
}
