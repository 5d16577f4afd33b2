"""Checks of ferry's deployment files that no schema covers, used by validate-deploy.sh.

  deploy_checks.py config-keys MANIFEST...      ferry.toml in rendered ConfigMaps and FERRY_*
                                               variables in rendered pods: keys src/config.rs knows
  deploy_checks.py compose docker-compose.yml    FERRY_* keys, distinct pods and host ports
  deploy_checks.py dashboard DASHBOARD.json      Grafana JSON: datasource variable, panels, metrics
  deploy_checks.py dockerfile                    Dockerfile paths, toolchain and binary vs the repo

Keys and metrics that are announced but not yet in src/ (PENDING_*) only warn.
Exit status 1 on any error, each printed as `ERROR ...`.
"""
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PENDING_KEYS = {"telemetry.otlp_endpoint", "telemetry.sample_ratio", "telemetry.service_name"}
PENDING_METRICS = {"ferry_consumer_lag", "ferry_delay_backlog"}
# Set from the environment by ferry itself or its CLI, not config keys.
NON_KEY_VARS = {"FERRY_CONFIG"}

errors = []
warnings = []


def err(msg):
    errors.append(msg)


def warn(msg):
    warnings.append(msg)


# ---------------------------------------------------------------- config.rs keys

def config_schema():
    """{section: set(keys) or None for a leaf} parsed from src/config.rs and src/config/.

    Top-level fields of `struct Config` are sections (a struct type) or leaves;
    a BTreeMap field accepts any sub-key ("*")."""
    # Sections may live in submodules of config.rs (src/config/*.rs).
    files = [ROOT / "src/config.rs", *sorted((ROOT / "src/config").glob("*.rs"))]
    src = "".join(f.read_text() for f in files)
    structs = {}
    for m in re.finditer(r"pub\(crate\) struct (\w+) \{(.*?)\n\}", src, re.S):
        fields = {}
        for f in re.finditer(r"^\s*pub\(crate\) (\w+): ([^,\n]+),", m.group(2), re.M):
            fields[f.group(1)] = f.group(2).strip()
        structs[m.group(1)] = fields
    if "Config" not in structs:
        sys.exit("ERROR cannot find `struct Config` in src/config.rs")
    schema = {}
    for name, ty in structs["Config"].items():
        if ty in structs:
            schema[name] = {k: ("*" if v.startswith("BTreeMap") else "leaf") for k, v in structs[ty].items()}
        else:
            schema[name] = None
    return schema


def check_key(schema, path, where):
    parts = path.split(".")
    sec = parts[0]
    if sec not in schema:
        err(f"{where}: unknown config section `{sec}` (not in src/config.rs)")
        return
    if schema[sec] is None:
        if len(parts) > 1:
            err(f"{where}: `{sec}` is a plain key, not a section")
        return
    if len(parts) == 1:
        return
    key = parts[1]
    if key not in schema[sec]:
        if path in PENDING_KEYS:
            warn(f"{where}: `{path}` is not in src/config.rs yet (announced; ferry refuses unknown keys until it lands)")
        else:
            err(f"{where}: unknown config key `{sec}.{key}` (not in src/config.rs)")
        return
    if len(parts) > 2 and schema[sec][key] != "*":
        err(f"{where}: `{sec}.{key}` takes no sub-keys")


def walk_toml(schema, table, prefix, where):
    for k, v in table.items():
        path = f"{prefix}.{k}" if prefix else k
        check_key(schema, path, where)
        sec = path.split(".")[0]
        if isinstance(v, dict) and path.count(".") < 1 and schema.get(sec) is not None:
            walk_toml(schema, v, path, where)


def env_key(name):
    """FERRY_SECTION__KEY -> section.key (lower case), or None for other variables."""
    if name in NON_KEY_VARS or not name.startswith("FERRY_"):
        return None
    return ".".join(p.lower() for p in name[len("FERRY_"):].split("__"))


def check_env(schema, names, where):
    for n in names:
        k = env_key(n)
        if k is not None:
            check_key(schema, k, f"{where} env {n}")


def cmd_config_keys(files):
    schema = config_schema()
    tomls = 0
    for f in files:
        for doc in yaml.safe_load_all(Path(f).read_text()):
            if not isinstance(doc, dict):
                continue
            kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
            where = f"{Path(f).name}: {kind}/{name}"
            if kind == "ConfigMap" and "ferry.toml" in (doc.get("data") or {}):
                tomls += 1
                try:
                    walk_toml(schema, tomllib.loads(doc["data"]["ferry.toml"]), "", where)
                except tomllib.TOMLDecodeError as e:
                    err(f"{where}: ferry.toml is not valid TOML: {e}")
            pod = None
            if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
                pod = doc["spec"]["template"]["spec"]
            if pod:
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    names = [e["name"] for e in c.get("env", [])]
                    dup = {n for n in names if names.count(n) > 1}
                    if dup:
                        err(f"{where}: container {c['name']} sets {sorted(dup)} more than once")
                    check_env(schema, names, where)
                    if kind == "Deployment" and not any(
                        e["name"] == "FERRY_POD" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
                        for e in c.get("env", [])
                    ):
                        err(f"{where}: FERRY_POD must come from the downward API (metadata.name)")
    if tomls == 0:
        err("no ConfigMap with ferry.toml in the rendered manifests")


# ---------------------------------------------------------------- compose

def cmd_compose(path):
    schema = config_schema()
    doc = yaml.safe_load(Path(path).read_text())
    services = doc.get("services", {})
    pods, host_ports = {}, {}
    for name, svc in services.items():
        img = svc.get("image", "")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if img.startswith("ferry") or "build" in svc:
            check_env(schema, env.keys(), f"compose service {name}")
            cmd = svc.get("command") or ["serve"]
            if cmd[0] not in ("serve", "migrate"):
                err(f"compose service {name}: unexpected ferry command {cmd}")
            if cmd[0] == "serve":
                if "FERRY_POD" not in env:
                    err(f"compose service {name}: FERRY_POD is not set")
                elif env["FERRY_POD"] in pods:
                    err(f"compose services {name} and {pods[env['FERRY_POD']]} share FERRY_POD={env['FERRY_POD']}")
                else:
                    pods[env["FERRY_POD"]] = name
                if "healthcheck" not in svc:
                    err(f"compose service {name}: no healthcheck")
        for p in svc.get("ports", []):
            hp = str(p).rsplit(":", 1)[0]
            if hp in host_ports:
                err(f"compose: host port {hp} used by {name} and {host_ports[hp]}")
            host_ports[hp] = name
    if len(pods) < 2:
        err(f"compose: expected two ferry pods, found {sorted(pods)}")
    for need in ("kafka", "scylla", "jaeger", "migrate"):
        if need not in services:
            err(f"compose: service {need} is missing")


# ---------------------------------------------------------------- dashboard

REQUIRED_PANELS = {
    "connections by platform": "ferry_connections",
    "request rate": "ferry_requests_total",
    "error rate": "ferry_request_errors_total",
    "latency p50": "ferry_request_seconds_bucket",
    "latency p99": "ferry_request_seconds_bucket",
    "log append": "ferry_log_append_seconds_bucket",
    "seqs assigned": "ferry_seqs_assigned_total",
    "pushes delivered": "ferry_pushes_delivered_total",
    "slow consumer": "ferry_slow_consumer_disconnects_total",
    "notices pending": "ferry_notices_pending",
    "delay lateness": "ferry_delay_lateness_seconds_bucket",
    "delay backlog": "ferry_delay_backlog",
    "consumer lag": "ferry_consumer_lag",
    "dead letters": "ferry_dead_letters_total",
}


def src_metrics():
    names = set()
    for f in (ROOT / "src").rglob("*.rs"):
        names |= set(re.findall(r'"(ferry_[a-z0-9_]+)"', f.read_text()))
    return names


def cmd_dashboard(path):
    try:
        d = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        err(f"{path}: not JSON: {e}")
        return
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        err(f"{path}: schemaVersion {d.get('schemaVersion')} (expected >= 36)")
    vars_ = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    if vars_.get("DS_PROMETHEUS", {}).get("type") != "datasource":
        err(f"{path}: no datasource template variable DS_PROMETHEUS")
    panels = []
    for p in d.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        err(f"{path}: duplicate panel ids")
    known = src_metrics()
    seen_metrics = set()
    for p in panels:
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            err(f"{path}: panel {p.get('title')!r} does not use the ${{DS_PROMETHEUS}} datasource")
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")) or gp["x"] + gp["w"] > 24:
            err(f"{path}: panel {p.get('title')!r} has a bad gridPos {gp}")
        if not p.get("targets"):
            err(f"{path}: panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                err(f"{path}: panel {p.get('title')!r}: unbalanced brackets in {expr}")
            for m in re.findall(r"\b(ferry_[a-z0-9_]+)", expr):
                seen_metrics.add(m)
                base = re.sub(r"_(bucket|sum|count)$", "", m)
                if base not in known and m not in known:
                    if base in PENDING_METRICS:
                        warn(f"{path}: metric {base} is not in src/ yet (announced)")
                    else:
                        err(f"{path}: panel {p.get('title')!r} uses {m}, which src/ does not define")
    titles = " | ".join(p.get("title", "").lower() for p in panels)
    for want, metric in REQUIRED_PANELS.items():
        if want not in titles:
            err(f"{path}: no panel titled like {want!r}")
        if metric not in seen_metrics:
            err(f"{path}: no query uses {metric}")
    q = [p for p in panels for t in p.get("targets", []) if "histogram_quantile(0.99" in t.get("expr", "") and "ferry_request_seconds_bucket" in t.get("expr", "")]
    if not q:
        err(f"{path}: no p99 histogram_quantile over ferry_request_seconds_bucket")


# ---------------------------------------------------------------- Dockerfile

def cmd_dockerfile():
    df = (ROOT / "Dockerfile").read_text()
    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    chan = re.search(r'channel\s*=\s*"([0-9.]+)"', (ROOT / "rust-toolchain.toml").read_text())
    rv = re.search(r"ARG RUST_VERSION=([0-9.]+)", df)
    if not (chan and rv and chan.group(1).startswith(rv.group(1))):
        err(f"Dockerfile: RUST_VERSION {rv and rv.group(1)} does not match rust-toolchain.toml channel {chan and chan.group(1)}")
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    bins = [b["name"] for b in cargo.get("bin", [])] or [cargo["package"]["name"]]
    m = re.search(r"--bin (\S+)", df)
    if not m or m.group(1) not in bins:
        err(f"Dockerfile: builds --bin {m and m.group(1)}, Cargo.toml has {bins}")
    if "--locked" not in df or not (ROOT / "Cargo.lock").exists():
        err("Dockerfile: build with --locked and a committed Cargo.lock")
    for need in ["Cargo.toml", "Cargo.lock", "src", "schemas/ferry.cql"] + [
        p for p in re.findall(r'"([^"]+)"', (ROOT / "build.rs").read_text()) if p.startswith("proto")
    ]:
        if not (ROOT / need).exists():
            err(f"Dockerfile: the build needs {need}, which is not in the repo")
        top = need.split("/")[0]
        if any(i.rstrip("/") in (top, need) for i in ignore):
            err(f".dockerignore excludes {need}, which the build needs")
    for i in ("target/", ".git/", "ferry-data/"):
        if i not in ignore:
            err(f".dockerignore should exclude {i}")
    if not re.search(r"^USER 10001", df, re.M):
        err("Dockerfile: the runtime stage must run as uid 10001")
    if "EXPOSE 8080" not in df:
        err("Dockerfile: EXPOSE 8080 missing")
    if not re.search(r'^ENTRYPOINT \["/usr/local/bin/ferry"\]', df, re.M) or 'CMD ["serve"]' not in df:
        err("Dockerfile: entrypoint ferry, cmd serve expected")
    cli = (ROOT / "src/cli.rs").read_text()
    for sub in ("Serve", "Migrate"):
        if not re.search(rf"^\s+{sub}\b", cli, re.M):
            err(f"src/cli.rs has no `{sub.lower()}` subcommand, which the image/chart/compose run")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"config-keys": lambda: cmd_config_keys(args),
     "compose": lambda: cmd_compose(args[0]),
     "dashboard": lambda: cmd_dashboard(args[0]),
     "dockerfile": cmd_dockerfile}[cmd]()
    for w in warnings:
        print(f"WARN  {w}")
    for e in errors:
        print(f"ERROR {e}")
    if errors:
        sys.exit(1)
    print(f"{cmd}: ok" + (f" ({len(warnings)} warning(s))" if warnings else ""))


if __name__ == "__main__":
    main()
