"""deploy/: the compose file, nginx's configuration and the environment example agree with each other
and with the settings model-go reads (no image can be pulled here, so they are checked as files)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from model_go.settings import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
REPLICA, MIGRATE, NGINX = "model-go", "migrate", "nginx"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # (merges `<<:`)
    return loaded


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def nginx() -> str:
    # without comments, so a directive named in one is not taken for the directive itself
    return re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text())


def directive(name: str) -> list[str]:
    """The values of every `name ...;` in nginx.conf."""
    return [m.strip() for m in re.findall(rf"(?m)^\s*{name}\s+([^;]*);", nginx())]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m|h)?", value).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600, None: 1}[unit]


def nginx_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG])?", value).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit and unit.lower()]


SETTINGS = {f"MODELGO_{name.upper()}" for name in Settings.model_fields}


def test_every_modelgo_variable_it_sets_is_a_setting() -> None:
    set_in_compose = {
        name
        for service in services().values()
        for name in service.get("environment", {})
        if name.startswith("MODELGO_")
    }
    assert set_in_compose, "the compose file sets no MODELGO_ variable"
    assert set_in_compose - SETTINGS == set()
    example = (DEPLOY / ".env.example").read_text()
    in_example = set(re.findall(r"(?m)^#?\s*(MODELGO_[A-Z0-9_]+)=", example))
    assert "MODELGO_SECRET_KEY" in in_example
    assert in_example - SETTINGS == set()


def test_migrations_run_once_before_the_replicas_which_do_not_migrate() -> None:
    svc = services()
    assert svc[MIGRATE]["command"] == ["migrate"]
    assert svc[MIGRATE]["restart"] == "no"
    assert svc[MIGRATE]["depends_on"]["postgres"]["condition"] == "service_healthy"
    replica = svc[REPLICA]
    assert replica["command"] == ["serve", "--no-migrate"]
    assert replica["depends_on"][MIGRATE]["condition"] == "service_completed_successfully"
    assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    assert replica["deploy"]["replicas"] >= 2
    # the same image for both, built from the Dockerfile here
    assert svc[MIGRATE]["build"] == replica["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert svc[MIGRATE]["image"] == replica["image"]


def test_replicas_share_the_database_redis_and_secret() -> None:
    migrate, replica = services()[MIGRATE]["environment"], services()[REPLICA]["environment"]
    assert migrate == replica
    assert replica["MODELGO_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert replica["MODELGO_DATABASE_URL"].endswith("@postgres:5432/modelgo")
    assert replica["MODELGO_REDIS_URL"] == "redis://redis:6379/0"
    assert replica["MODELGO_SECRET_KEY"].startswith("${MODELGO_SECRET_KEY:?")  # one value, required
    assert replica["MODELGO_DEMO"] == "false"  # replicas starting together would race to create it
    redis = " ".join(services()["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis  # an evicted counter or reservation is an overspend
    assert services()["postgres"]["image"] == "postgres:15"
    assert services()["redis"]["image"] == "redis:7"


def test_replicas_are_checked_on_readyz_and_may_drain() -> None:
    replica = services()[REPLICA]
    port = replica["environment"]["MODELGO_PORT"]
    check = " ".join(replica["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in check
    assert seconds(replica["stop_grace_period"]) > Settings().shutdown_grace_seconds
    assert services()[NGINX]["depends_on"][REPLICA]["condition"] == "service_healthy"


def test_only_nginx_is_a_trusted_proxy() -> None:
    nginx_address = ipaddress.ip_address(services()[NGINX]["networks"]["backend"]["ipv4_address"])
    subnet = ipaddress.ip_network(compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    assert nginx_address in subnet
    trusted = services()[REPLICA]["environment"]["MODELGO_TRUSTED_PROXIES"]
    networks = [ipaddress.ip_network(part.strip()) for part in trusted.split(",")]
    assert any(nginx_address in n for n in networks)
    assert all(n.num_addresses == 1 for n in networks)  # not the replicas', Redis's or PostgreSQL's


def test_nginx_sends_to_every_replica_and_streams() -> None:
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", nginx())
    assert upstream is not None
    name, body = upstream.groups()
    port = services()[REPLICA]["environment"]["MODELGO_PORT"]
    # the service's name: Docker's DNS answers it with every replica's address
    assert re.findall(r"server\s+(\S+)", body) == [f"{REPLICA}:{port}"]
    assert directive("proxy_pass") == [f"http://{name}"]
    assert directive("proxy_http_version") == ["1.1"]
    assert directive("proxy_buffering") == ["off"]
    assert 'Connection ""' in directive("proxy_set_header")
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in directive("proxy_set_header")
    # a reply without streaming arrives whole, after as long as model-go may wait on the upstream
    assert seconds(directive("proxy_read_timeout")[0]) >= Settings().upstream_total_timeout
    # model-go's own 413 (in the API's shape) for bodies over its limit, not nginx's page
    largest = nginx_bytes(directive("client_max_body_size")[0])
    assert largest > Settings().max_body_bytes
    # prompts never in a temporary file: every body fits nginx's memory buffer, no reply spills over
    assert nginx_bytes(directive("client_body_buffer_size")[0]) >= largest
    assert directive("proxy_max_temp_file_size") == ["0"]
    assert directive("client_body_in_file_only") in ([], ["off"])
    assert services()[NGINX]["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]


def test_the_image_installs_the_project_and_runs_model_go() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"(?m)^FROM python:3\.11-slim$", dockerfile)
    assert "RUN pip install ." in dockerfile
    assert 'ENTRYPOINT ["model-go"]' in dockerfile
    assert re.search(r"(?m)^USER ", dockerfile)  # not root
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)


def test_the_readme_starts_it() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "cp deploy/.env.example deploy/.env" in readme
    assert f"docker compose -f deploy/compose.yaml up -d --build --scale {REPLICA}=" in readme
    assert "`model-go serve --workers N`" in readme
