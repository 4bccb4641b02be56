"""Checks the Kubernetes manifests of this folder against the Kubernetes API schema.

No cluster runs in CI, so each document is deserialized into the official Python
client's models (kubernetes.client: V1Job, V1PersistentVolumeClaim), which rejects a
missing required field, and serialized back: a field the schema does not know (a
misspelling) is dropped on the way and the round trip differs. Also checks what the
sharded run relies on: Indexed Jobs whose completions equal --shard-count, the
completion index passed to the pods, and the same hunt options in both stages.

Usage: python3 deploy/kubernetes/validate.py   (needs: pip install kubernetes pyyaml)
"""

import json
import pathlib
import sys

import yaml
from kubernetes import client

HERE = pathlib.Path(__file__).parent
KINDS = {"Job": "V1Job", "PersistentVolumeClaim": "V1PersistentVolumeClaim"}


def deserialize(doc):
    # The client's own deserializer (what it does with a server's answer), from plain
    # data; its public deserialize() wants an HTTP response.
    api = client.ApiClient()
    return api._ApiClient__deserialize(json.loads(json.dumps(doc)), KINDS[doc["kind"]])


def main():
    api = client.ApiClient()
    errors = []
    jobs = {}
    files = sorted(HERE.glob("*.yaml"))
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            where = f"{path.name} ({doc.get('kind')} {doc.get('metadata', {}).get('name')})"
            if doc.get("kind") not in KINDS:
                errors.append(f"{where}: unexpected kind")
                continue
            try:
                model = deserialize(doc)
            except (ValueError, TypeError) as e:
                errors.append(f"{where}: {e}")
                continue
            back = api.sanitize_for_serialization(model)
            if back != doc:
                errors.append(f"{where}: fields the schema does not know (or of the wrong type):"
                              f"\n  written: {doc}\n  schema:  {back}")
            if doc["kind"] == "Job":
                jobs[doc["metadata"]["name"]] = model
    for name in ("ualhunt-scan", "ualhunt-context"):
        job = jobs.get(name)
        if job is None:
            errors.append(f"{name}: missing")
            continue
        spec = job.spec
        c = spec.template.spec.containers[0]
        args = c.args
        if spec.completion_mode != "Indexed":
            errors.append(f"{name}: not an Indexed Job")
        count = args[args.index("--shard-count") + 1]
        if str(spec.completions) != count:
            errors.append(f"{name}: completions {spec.completions} but --shard-count {count}")
        env = {e.name: e for e in c.env or []}
        if "JOB_COMPLETION_INDEX" not in env or "auto" not in args:
            errors.append(f"{name}: the pods do not read their shard from JOB_COMPLETION_INDEX")
    scan, context = jobs.get("ualhunt-scan"), jobs.get("ualhunt-context")
    if scan and context:
        strip = lambda a: [x for x in a if x not in ("--context-from", "/work/context-plan")
                           and not x.startswith("/work/partials/")]
        a = strip(scan.spec.template.spec.containers[0].args)
        b = strip(context.spec.template.spec.containers[0].args)
        if a != b:
            errors.append(f"the two stages' hunt options differ: {a} vs {b}")
    for e in errors:
        print("kubernetes manifests:", e, file=sys.stderr)
    print(f"kubernetes manifests: {len(files)} files checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
