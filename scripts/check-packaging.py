#!/usr/bin/env python3
"""Static checks of the packaging that no Docker engine here can run: the Dockerfile (parsed
with the `dockerfile` package, Docker's own parser), docker-compose.yml (`docker-compose config`
and its structure), the Prometheus config (`promtool check config`) and the systemd unit.
Exits non-zero with a message per problem. Run from anywhere: paths are the repository's."""

import os
import subprocess
import sys

import dockerfile
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def check_dockerfile():
    cmds = dockerfile.parse_file(os.path.join(ROOT, "Dockerfile"))
    stages = [c for c in cmds if c.cmd == "FROM"]
    check(len(stages) >= 2, "Dockerfile: a multi-stage build (build + runtime)")
    for s in stages:
        check(":" in s.value[0] and not s.value[0].endswith(":latest"),
              f"Dockerfile: base image pinned to a tag: {s.value[0]}")
    last_from = max(i for i, c in enumerate(cmds) if c.cmd == "FROM")
    runtime = cmds[last_from:]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    check(users and users[-1] not in ("root", "0"), "Dockerfile: the runtime runs as a non-root USER")
    health = [c for c in runtime if c.cmd == "HEALTHCHECK"]
    check(health and any("/health/live" in v for v in health[-1].value),
          "Dockerfile: a HEALTHCHECK on /health/live")
    entry = [c.value for c in runtime if c.cmd == "ENTRYPOINT"]
    check(entry and entry[-1][0] == "streamscore", "Dockerfile: ENTRYPOINT is streamscore")
    copies = [c for c in cmds if c.cmd == "COPY"]
    check(any("sentiment-en.model" in " ".join(c.value) for c in copies[len(copies) // 2:]),
          "Dockerfile: the shipped model is in the runtime image")
    for c in copies:
        if any(f.startswith("--from") for f in c.flags):
            continue
        for src in c.value[:-1]:
            check(os.path.exists(os.path.join(ROOT, src)), f"Dockerfile: COPY source {src} exists")


def check_compose():
    path = os.path.join(ROOT, "docker-compose.yml")
    r = subprocess.run(["docker-compose", "-f", path, "config", "-q"], capture_output=True, text=True)
    check(r.returncode == 0, f"docker-compose config: {r.stderr.strip()}")
    with open(path) as f:
        c = yaml.safe_load(f)
    services = c.get("services", {})
    kafka = services.get("kafka", {})
    check(kafka.get("image", "").startswith("apache/kafka:") and not kafka["image"].endswith(":latest"),
          "compose: kafka is the official apache/kafka image, pinned")
    env = kafka.get("environment", {})
    check("controller" in str(env.get("KAFKA_PROCESS_ROLES", "")), "compose: kafka runs in KRaft mode")
    topics = services.get("topics", {})
    check("create" in topics.get("command", []), "compose: a one-shot service creates the topics")
    ss = services.get("streamscore", {})
    check(ss.get("build", {}).get("dockerfile") == "Dockerfile", "compose: streamscore is built from the Dockerfile")
    check(any("config/compose.toml" in v for v in ss.get("volumes", [])), "compose: streamscore's config is mounted")
    check("8080:8080" in ss.get("ports", []), "compose: the API is published on 8080")
    producer = [s for s in services.values() if "produce" in s.get("command", [])]
    check(producer and "--loop" in producer[0]["command"], "compose: a sample-tweet producer loops")
    prom = services.get("prometheus", {})
    check(any("config/prometheus.yml" in v for v in prom.get("volumes", [])), "compose: Prometheus gets config/prometheus.yml")
    for s in services.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                check(os.path.exists(os.path.join(ROOT, src)), f"compose: mounted file {src} exists")


def check_prometheus():
    path = os.path.join(ROOT, "config", "prometheus.yml")
    r = subprocess.run(["promtool", "check", "config", path], capture_output=True, text=True)
    check(r.returncode == 0, f"promtool check config: {r.stdout.strip()} {r.stderr.strip()}")
    with open(path) as f:
        p = yaml.safe_load(f)
    targets = [t for job in p["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    check("streamscore:8080" in targets, "prometheus.yml scrapes streamscore:8080")


def check_systemd():
    path = os.path.join(ROOT, "config", "systemd", "streamscore.service")
    with open(path) as f:
        text = f.read()
    for needed in ("[Unit]", "[Service]", "[Install]", "ExecStart=", "User=", "KillSignal=SIGTERM"):
        check(needed in text, f"systemd unit has {needed}")


for step in (check_dockerfile, check_compose, check_prometheus, check_systemd):
    try:
        step()
    except Exception as e:  # a missing file or tool is a failure, never a skip
        problems.append(f"{step.__name__}: {e!r}")

for p in problems:
    print("FAIL", p, file=sys.stderr)
print(f"packaging checks: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
