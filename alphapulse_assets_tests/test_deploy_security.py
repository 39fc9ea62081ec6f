"""Security of the deployment as configured: no secret in configuration files, the UI on loopback.

The grep covers every configuration-like file in the repository (YAML, TOML, INI, env files, Dockerfiles,
the Makefile, the CI script): a password, token or key must be a reference to the environment or to a
secret's *name*, never a literal value; a URL must not carry credentials.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {
    ".git",
    ".venv",
    ".alphapulse",
    ".hypothesis",
    ".pytest_cache",
    "node_modules",
    "test-artifacts",
    "build",
    "__pycache__",
    "alphapulse_assets.egg-info",
}
CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".env", ".json"}
CONFIG_NAMES = {"Dockerfile", "Makefile", "run", ".env", "docker-compose.yml"}

# key: value / key = value / KEY=value, for keys that name a secret's value.
SECRET_KEY = re.compile(
    r"""(?ix) ^\s*[-\s]*["']?(?P<key>[a-z0-9_.-]*(password|passwd|secret_key|api_?key|token|private_key)[a-z0-9_]*)["']?
        \s*[:=]\s*(?P<value>[^#\n]*)"""
)
URL_WITH_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"{}$]+:(?P<pw>[^@\s/'\"{}$]+)@")
# Values that are not secrets: empty, env references, template variables, secret names.
ALLOWED_VALUE = re.compile(
    r"""^\s*["']?(|~|null|true|false|\{\s*env\s*:.*\}|\$\{?[A-Z_][A-Z0-9_]*\}?.*|\{\{.*\}\}|.*\.\.\..*)["']?\s*$""",
    flags=re.I,
)


def config_files() -> list[Path]:
    out = []
    for path in REPO.rglob("*"):
        if any(part in SKIP_DIRS for part in path.relative_to(REPO).parts) or not path.is_file():
            continue
        if path.suffix in CONFIG_SUFFIXES or path.name in CONFIG_NAMES or path.name.startswith("Dockerfile"):
            out.append(path)
    return out


def literal_secrets(text: str) -> list[str]:
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        match = SECRET_KEY.match(line)
        if match and match.group("value").strip() and not ALLOWED_VALUE.match(match.group("value")):
            value = match.group("value").strip()
            if not value.endswith(":") and value not in ("|", ">"):  # a nested block, checked line by line
                found.append(f"line {lineno}: {match.group('key')}")
        for _url in URL_WITH_CREDENTIALS.finditer(line):
            found.append(f"line {lineno}: credentials in a URL")
    return found


def test_the_secret_finder_finds_secrets():
    # The grep must be able to fail: literal secrets in each shape it looks for are caught...
    assert literal_secrets("password: hunter2")
    assert literal_secrets("  postgresqlPassword: 'hunter2'")
    assert literal_secrets("DAGSTER_PG_PASSWORD=hunter2")
    assert literal_secrets("url: postgresql://dagster:hunter2@db:5432/dagster")
    assert literal_secrets('"api_key": "abc123"')
    # ...and references to the environment or to a secret's name are not.
    assert not literal_secrets("password:\n  env: DAGSTER_PG_PASSWORD")
    assert not literal_secrets("password: {env: DAGSTER_PG_PASSWORD}")
    assert not literal_secrets('DAGSTER_PG_PASSWORD="${DAGSTER_PG_PASSWORD}"')
    assert not literal_secrets("postgresqlSecretName: dagster-postgresql-secret")
    assert not literal_secrets("url: postgresql://dagster@db:5432/dagster")


def test_no_literal_secret_in_any_configuration_file():
    files = config_files()
    names = {p.relative_to(REPO).as_posix() for p in files}
    # The files that matter most are really scanned.
    assert {
        "dagster.yaml",
        "deploy/dagster.yaml",
        "deploy/dagster-k8s.yaml",
        "deploy/helm/values.yaml",
        "deploy/Dockerfile",
        "pyproject.toml",
        "Makefile",
        ".ci/run",
    } <= names, sorted(names)
    problems = {}
    for path in files:
        found = literal_secrets(path.read_text(errors="replace"))
        if found:
            problems[path.relative_to(REPO).as_posix()] = found
    assert not problems, problems


def test_webserver_binds_to_loopback_unless_told_otherwise():
    # Dagster's own default...
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "dagster-webserver"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(r"--host.*?\[default:\s*127\.0\.0\.1\]", help_text, flags=re.S), help_text
    # ...and every command this project documents or runs says so explicitly.
    commands = []
    for name in ("Makefile", "README.md", "docs/deployment.md", ".ci/run"):
        text = (REPO / name).read_text()
        commands += [
            line
            for line in text.splitlines()
            if re.search(r"dagster(-webserver| dev)\b", line)
            and not line.lstrip().startswith("#")
            and (
                "-h " in line
                or "--host" in line
                or "dagster dev" in line
                or line.strip().startswith("dagster-webserver")
            )
        ]
    assert commands
    for line in commands:
        assert re.search(r"(-h|--host)[ =]127\.0\.0\.1", line), f"webserver not bound to loopback: {line.strip()}"


def test_readme_production_section_covers_access_control_and_secrets():
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Production\b(.*?)(?=^## )", readme, flags=re.S | re.M)
    assert match, "README has no '## Production' section"
    section = match.group(1)
    for needle in (
        "no login",
        "oauth2-proxy",
        "TLS",
        "127.0.0.1",
        "cp deploy/dagster.yaml",
        "dagster-daemon run",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PASSWORD",
        "docs/deployment.md",
    ):
        assert needle in section, f"README production section does not mention {needle!r}"
    assert not literal_secrets(section)
