"""The Python `kubernetes` client against skiff: create, list with selectors,
watch, patch (the client's strategic-merge default) and delete.

Run by the e2e test `python_client` with KUBECONFIG pointing at a `skiff up`.
Exits non-zero with a message on the first thing that does not hold.
"""

import sys
import threading

from kubernetes import client, config, watch


def main() -> None:
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    ns = "py"

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    for name, tier in [("a", "web"), ("b", "web"), ("c", "db")]:
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=name, labels={"tier": tier}),
                data={"k": name},
            ),
        )

    web = core.list_namespaced_config_map(ns, label_selector="tier=web")
    assert sorted(cm.metadata.name for cm in web.items) == ["a", "b"], web.items
    # "tier!=web" alone also matches unlabelled maps such as kube-root-ca.crt.
    not_web = core.list_namespaced_config_map(ns, label_selector="tier,tier!=web")
    assert [cm.metadata.name for cm in not_web.items] == ["c"], not_web.items
    by_name = core.list_namespaced_config_map(ns, field_selector="metadata.name=b")
    assert [cm.metadata.name for cm in by_name.items] == ["b"], by_name.items

    # Paged list with limit/continue.
    page = core.list_namespaced_config_map(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue, page.metadata
    rest = core.list_namespaced_config_map(ns, limit=2, _continue=page.metadata._continue)
    assert len(rest.items) >= 1, rest.items

    # Watch from the list's resourceVersion sees a new object.
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = []

    def watch_events() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20):
            seen.append((event["type"], event["object"].metadata.name))
            if event["object"].metadata.name == "d":
                w.stop()

    watcher = threading.Thread(target=watch_events)
    watcher.start()
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d")))
    watcher.join(30)
    assert ("ADDED", "d") in seen, seen

    # A Deployment patched with the client's default (strategic merge for dicts).
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "samples/wasm/http-echo.wasm", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "samples/wasm/worker.wasm"},
                    ]
                },
            },
        },
    }
    apps.create_namespaced_deployment(ns, deployment)
    apps.patch_namespaced_deployment(
        "echo",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}},
    )
    patched = apps.read_namespaced_deployment("echo", ns)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {"main", "side"}, containers.keys()
    assert sorted(e.name for e in containers["main"].env) == ["A", "B"], containers["main"].env

    core.delete_namespaced_config_map("a", ns)
    left = sorted(cm.metadata.name for cm in core.list_namespaced_config_map(ns).items)
    assert "a" not in left, left
    try:
        core.read_namespaced_config_map("a", ns)
        raise AssertionError("configmap a still readable after delete")
    except client.exceptions.ApiException as err:
        assert err.status == 404, err

    print("python client scenario: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as err:
        print(f"assertion failed: {err!r}", file=sys.stderr)
        raise
