"""Settings from the environment and ``.env``: defaults, validation, secrecy."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_app.settings import Settings as ExampleSettings
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from transom_socketio import config
from transom_socketio.config import ConfigError, Settings, load_settings

SECRET = "s3cret-" + "k" * 40
OTHER_SECRET = "0ther-" + "q" * 40
URI_PASSWORD = "hunter2-uri-pass"
PRODUCTION = {
    "APP_ENV": "production",
    "MONGODB_URI": f"mongodb://app:{URI_PASSWORD}@db.internal:27017/",
    "JWT_SECRET": SECRET,
    "SMTP_URL": f"smtp://mailer:{URI_PASSWORD}@smtp.internal:587",
    "PUBLIC_URL": "https://chat.example.com",
}


def load(tmp_path: Path, **environ: str) -> Settings:
    """Settings from exactly ``environ``, with a ``.env`` that does not exist."""
    return load_settings(environ=environ, env_file=tmp_path / "missing.env")


def test_defaults(tmp_path):
    settings = load(tmp_path)
    assert settings.app_env == "development"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.mongodb_uri is None
    assert settings.uses_embedded_db
    assert settings.mongodb_db == "transom"
    assert settings.redis_url is None  # one process: rooms, history and presence in memory
    assert settings.jwt_ttl_seconds == 3600
    assert settings.socket_token_ttl_seconds == 30
    assert settings.cors_allowed_origins == ()
    assert settings.log_level == "INFO"
    assert settings.login_max_failures == 5
    assert (settings.signups_per_address, settings.signup_window_seconds) == (10, 3600)
    assert (settings.password_hashing_concurrency, settings.password_hashing_queue) == (2, 32)
    assert settings.writes_per_minute_per_user == 120
    assert settings.broadcasts_per_minute_per_user == 12
    assert settings.max_body_bytes == 64 * 1024
    assert settings.trusted_proxy_hops == 0
    assert settings.metrics_token is None
    assert settings.presence_requests_per_minute_per_user == 60
    assert settings.socketio_connect_timeout_seconds == 20
    assert settings.socketio_max_pending_per_address == 20
    assert settings.event_loop == "uvloop"  # a dependency wherever it is built


def test_development_without_jwt_secret_gets_a_random_one_per_process(tmp_path):
    first, second = load(tmp_path), load(tmp_path)
    assert len(first.jwt_secret.encode()) >= 32
    assert first.jwt_secret != second.jwt_secret


def test_values_are_parsed(tmp_path):
    settings = load(
        tmp_path,
        APP_ENV="Test",
        PORT="0",
        LOG_LEVEL="debug",
        JWT_TTL_SECONDS="60",
        SOCKET_TOKEN_TTL_SECONDS="5",
        CORS_ALLOWED_ORIGINS="https://a.example/, http://B.example:8080",
        TRUSTED_PROXY_HOPS="2",
        MONGODB_URI="mongodb://127.0.0.1:27017/",
        MONGODB_DB="other_db",
        REDIS_URL="redis://127.0.0.1:6379/0",
        SOCKETIO_CONNECT_TIMEOUT_SECONDS="5",
        SOCKETIO_MAX_PENDING_PER_ADDRESS="100",
    )
    assert settings.app_env == "test"
    assert settings.port == 0
    assert settings.log_level == "DEBUG"
    assert (settings.jwt_ttl_seconds, settings.socket_token_ttl_seconds) == (60, 5)
    assert settings.cors_allowed_origins == ("https://a.example", "http://b.example:8080")
    assert settings.trusted_proxy_hops == 2
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017/"
    assert not settings.uses_embedded_db
    assert settings.mongodb_db == "other_db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.socketio_connect_timeout_seconds == 5
    assert settings.socketio_max_pending_per_address == 100


def test_event_loop_is_asyncio_on_request_or_where_uvloop_is_missing(tmp_path, monkeypatch):
    assert load(tmp_path, EVENT_LOOP="asyncio").event_loop == "asyncio"
    find_spec = config.importlib.util.find_spec
    monkeypatch.setattr(
        config.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "uvloop" else find_spec(name, *args),
    )
    assert load(tmp_path).event_loop == "asyncio"
    with pytest.raises(ConfigError, match=r"^EVENT_LOOP=uvloop but uvloop is not installed"):
        load(tmp_path, EVENT_LOOP="uvloop")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("JWT_TTL_SECONDS", "-5"),
        ("JWT_TTL_SECONDS", "0"),
        ("JWT_TTL_SECONDS", "1h"),
        ("SOCKET_TOKEN_TTL_SECONDS", "-30"),
        ("LOGIN_MAX_FAILURES", "0"),
        ("LOGIN_LOCKOUT_SECONDS", "-1"),
        ("SIGNUPS_PER_ADDRESS", "-1"),
        ("SIGNUP_WINDOW_SECONDS", "0"),
        ("PASSWORD_HASHING_CONCURRENCY", "0"),
        ("PASSWORD_HASHING_CONCURRENCY", "1000"),
        ("PASSWORD_HASHING_QUEUE", "-1"),
        ("WRITES_PER_MINUTE_PER_USER", "many"),
        ("BROADCASTS_PER_MINUTE_PER_USER", "-3"),
        ("MAX_BODY_BYTES", "10"),
        ("MONGODB_TIMEOUT_MS", "fast"),
        ("APP_ENV", "staging"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_FORMAT", "xml"),
        ("EVENT_LOOP", "trio"),
        ("TRUSTED_PROXY_HOPS", "-1"),
        ("TRUSTED_PROXY_HOPS", "11"),
        ("TRUSTED_PROXY_HOPS", "yes"),
        ("METRICS_TOKEN", "too-short"),
        ("PRESENCE_REQUESTS_PER_MINUTE_PER_USER", "-1"),
        ("JWT_SECRET", "too-short"),
        ("JWT_PREVIOUS_SECRET", "too-short"),
        ("MONGODB_URI", "localhost:27017"),
        ("MONGODB_URI", "http://db.example:27017/"),
        ("MONGODB_DB", "bad.name"),
        ("CORS_ALLOWED_ORIGINS", "example.com"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example/spa"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example?x=1"),
        ("CORS_ALLOWED_ORIGINS", "https://user@app.example"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example:99999"),
        ("CORS_ALLOWED_ORIGINS", "ftp://app.example"),
        ("REDIS_URL", "localhost:6379"),
        ("SOCKETIO_CONNECT_TIMEOUT_SECONDS", "0"),
        ("SOCKETIO_CONNECT_TIMEOUT_SECONDS", "20s"),
        ("SOCKETIO_MAX_PENDING_PER_ADDRESS", "-1"),
    ],
)
def test_a_bad_value_raises_a_one_line_error_naming_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **{name: value})
    message = str(raised.value)
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["true", "yes", "1", "on"])
def test_the_retired_trust_proxy_headers_stops_start_up_naming_its_replacement(tmp_path, value):
    # Its rule (X-Real-IP, then the right-most X-Forwarded-For) let a client choose its
    # address; TRUSTED_PROXY_HOPS replaced it, and the number must be chosen.
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, TRUST_PROXY_HEADERS=value)
    message = str(raised.value)
    assert "TRUST_PROXY_HEADERS" in message
    assert "TRUSTED_PROXY_HOPS" in message
    assert "\n" not in message


def test_a_retired_trust_proxy_headers_left_off_in_an_old_env_file_is_ignored(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("TRUST_PROXY_HEADERS=false\n")
    assert load_settings(environ={}, env_file=env_file).trusted_proxy_hops == 0


def test_production_requires_mongodb_uri(tmp_path):
    with pytest.raises(ConfigError, match="MONGODB_URI"):
        load(tmp_path, APP_ENV="production", JWT_SECRET=SECRET)


def test_production_requires_jwt_secret(tmp_path):
    environ = {k: v for k, v in PRODUCTION.items() if k != "JWT_SECRET"}
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load(tmp_path, **environ)


def test_production_refuses_a_jwt_secret_shorter_than_32_bytes(tmp_path):
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load(tmp_path, **{**PRODUCTION, "JWT_SECRET": "x" * 31})
    assert load(tmp_path, **{**PRODUCTION, "JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32


def test_production_requires_smtp_url(tmp_path):
    environ = {k: v for k, v in PRODUCTION.items() if k != "SMTP_URL"}
    with pytest.raises(ConfigError, match=r"^SMTP_URL is required when APP_ENV=production$"):
        load(tmp_path, **environ)


def test_production_requires_public_url(tmp_path):
    """Found by a review: without it, production's mails linked to http://HOST:PORT,
    http://0.0.0.0:8000/reset?token=... in the Docker image."""
    environ = {k: v for k, v in PRODUCTION.items() if k != "PUBLIC_URL"}
    with pytest.raises(ConfigError, match=r"^PUBLIC_URL is required when APP_ENV=production$"):
        load(tmp_path, **environ)
    assert load(tmp_path, **PRODUCTION).public_base_url == "https://chat.example.com"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMTP_URL", f"http://mailer:{URI_PASSWORD}@smtp.internal"),
        ("PUBLIC_URL", "app.example.com"),
        # Found by a review: links to nowhere.
        ("PUBLIC_URL", "http://"),
        ("PUBLIC_URL", "https://app example.com"),
        ("PUBLIC_URL", "https://:443/"),
        # Found by a review: links that read as another site's, or break.
        ("PUBLIC_URL", "https://bank.example@evil.example"),
        ("PUBLIC_URL", "https://app.example.com/?ref=mail"),
        ("PUBLIC_URL", "https://app.example.com/#top"),
        ("PUBLIC_URL", "https://app.example.com:99999"),
        ("VERIFY_TOKEN_TTL_SECONDS", "10"),
        ("REQUIRE_VERIFIED_EMAIL", "perhaps"),
    ],
)
def test_bad_mail_settings_stop_start_up_naming_the_variable(tmp_path, variable, value):
    with pytest.raises(ConfigError, match=variable) as raised:
        load(tmp_path, **{variable: value})
    assert URI_PASSWORD not in str(raised.value)


def test_mail_links_default_to_the_listen_address(tmp_path):
    settings = load(tmp_path, HOST="10.1.2.3", PORT="8123")
    assert settings.public_base_url == "http://10.1.2.3:8123"
    assert settings.uses_dev_outbox
    given = load(tmp_path, PUBLIC_URL="https://app.example.com/")
    assert given.public_base_url == "https://app.example.com"
    under_a_path = load(tmp_path, PUBLIC_URL="https://example.com:8443/chat/")
    assert under_a_path.public_base_url == "https://example.com:8443/chat"


def test_production_with_every_required_value_starts(tmp_path):
    settings = load(tmp_path, **PRODUCTION)
    assert settings.is_production
    assert settings.jwt_secret == SECRET


def test_dotenv_is_read_and_the_real_environment_overrides_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# comment\nPORT=9001\nLOG_LEVEL=WARNING\nJWT_SECRET={SECRET}\nMONGODB_DB=from_file\n"
    )
    settings = load_settings(environ={"PORT": "9002", "MONGODB_DB": ""}, env_file=env_file)
    assert settings.port == 9002
    assert settings.log_level == "WARNING"
    assert settings.jwt_secret == SECRET
    # An empty variable in the environment counts as unset: the default, not the file.
    assert settings.mongodb_db == "transom"


def test_a_bad_value_in_dotenv_is_reported_like_one_in_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SOCKET_TOKEN_TTL_SECONDS=-1\n")
    with pytest.raises(ConfigError, match="SOCKET_TOKEN_TTL_SECONDS"):
        load_settings(environ={}, env_file=env_file)


@pytest.mark.parametrize(
    "environ",
    [
        {"JWT_SECRET": "short-" + URI_PASSWORD},
        {"JWT_SECRET": SECRET, "JWT_PREVIOUS_SECRET": "short-" + URI_PASSWORD},
        {"METRICS_TOKEN": "short-" + URI_PASSWORD},
        {"MONGODB_URI": f"http://app:{URI_PASSWORD}@db.internal/"},
        {"APP_ENV": "production", "MONGODB_URI": PRODUCTION["MONGODB_URI"], "JWT_SECRET": "s"},
        {**PRODUCTION, "PORT": "http"},
    ],
)
def test_secret_values_never_appear_in_error_messages(tmp_path, environ):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **environ)
    message = str(raised.value)
    assert URI_PASSWORD not in message
    assert SECRET not in message


def test_secret_values_never_appear_in_the_repr(tmp_path):
    metrics_token = "m3trics-" + "t" * 40
    settings = load(
        tmp_path, **PRODUCTION, JWT_PREVIOUS_SECRET=OTHER_SECRET, METRICS_TOKEN=metrics_token
    )
    shown = repr(settings) + str(settings)
    everything = (SECRET, OTHER_SECRET, URI_PASSWORD, PRODUCTION["MONGODB_URI"], metrics_token)
    for secret in everything:
        assert secret not in shown
    assert "production" in shown


def documented_default(field: FieldInfo) -> str:
    """How ``.env.example`` writes a setting's default: empty when it is computed or unset."""
    default = field.default
    if field.default_factory is not None or default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(default)
    return str(default)


def test_every_setting_is_described_and_read_from_its_variable():
    """What an app's ``.env.example`` lists (the template checks its own file): every
    setting has a description and is read from its name in capitals."""
    for settings_class in (Settings, ExampleSettings):
        for name, field in settings_class.model_fields.items():
            assert field.description, f"{name} has no description"
            assert config.variable(name) == name.upper()


def test_a_file_listing_every_setting_with_its_default_loads_the_defaults(tmp_path):
    """An ``.env.example`` written from the fields (a setting per line, empty for a
    computed or unset default) changes nothing."""
    example = tmp_path / ".env.example"
    example.write_text(
        "".join(
            f"{config.variable(name)}={documented_default(field)}\n"
            for name, field in Settings.model_fields.items()
        )
    )
    loaded = load_settings(environ={}, env_file=example)
    assert loaded.model_dump(exclude={"jwt_secret"}) == Settings().model_dump(
        exclude={"jwt_secret"}
    )


def test_an_app_s_settings_class_is_loaded_with_its_own_defaults_and_fields(tmp_path):
    settings = load_settings(
        environ={"PORT": "9003"}, env_file=tmp_path / "missing.env", settings_class=ExampleSettings
    )
    assert isinstance(settings, ExampleSettings)
    assert (settings.mongodb_db, settings.port) == ("example_app", 9003)
    with pytest.raises(ConfigError, match="MONGODB_DB"):
        load_settings(
            environ={"MONGODB_DB": "bad.name"},
            env_file=tmp_path / "missing.env",
            settings_class=ExampleSettings,
        )


def test_settings_built_in_code_hold_their_arguments_not_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "1234")
    assert Settings(app_env="test").port == 8000
    with pytest.raises(ValidationError):
        Settings(prot=1)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # PyMongo only warns about these and goes on without them: TLS asked, none used.
        ("mongodb://app:{pw}@db.internal:27017/?tls=yes", "tls"),
        ("mongodb://app:{pw}@db.internal:27017/?ssl=1", "tls"),  # ssl is tls's alias
        ("mongodb://app:{pw}@db.internal:27017/?maxPoolSize=abc", "maxpoolsize"),
        ("mongodb://app:{pw}@db.internal:27017/?authMechanism=BOGUS", "authmechanism"),
        ("mongodb://app:{pw}@db.internal:27017/?noSuchOption=1", "Unknown option"),
        # An unencoded "/" in the password makes the rest read as the port.
        ("mongodb://app:Zx9/{pw}@db.internal:27017/", "Port"),
        ("mongodb://app:{pw}@db.internal:99999/", "Port"),
    ],
)
def test_a_mongodb_uri_the_driver_would_not_read_as_written_stops_start_up(tmp_path, value, reason):
    """Found by a review: ``?tls=yes`` ran production unencrypted (PyMongo warned on
    stderr and dropped the option), a bad port gave a 38-line traceback."""
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, MONGODB_URI=value.format(pw=URI_PASSWORD))
    message = str(raised.value)
    assert message.startswith("MONGODB_URI is invalid: ") and "\n" not in message
    assert reason in message
    assert URI_PASSWORD not in message and "db.internal" not in message


def test_a_mongodb_srv_uri_is_checked_without_a_dns_lookup(tmp_path):
    settings = load(tmp_path, MONGODB_URI="mongodb+srv://app:x@cluster0.invalid/?w=majority")
    assert settings.mongodb_uri == "mongodb+srv://app:x@cluster0.invalid/?w=majority"
    with pytest.raises(ConfigError, match="MONGODB_URI is invalid: The value of tls"):
        load(tmp_path, MONGODB_URI="mongodb+srv://cluster0.invalid/?tls=maybe")


@pytest.mark.parametrize(
    "value",
    [
        "redis://default:Zx9/{pw}@redis.internal:6379/0",  # "/" read as the end of the port
        "redis://default:Zx9?{pw}@redis.internal:6379/0",
        "redis://default:Zx9#{pw}@redis.internal:6379/0",
        "redis://default:{pw}@redis.internal:port/0",
        "redis://default:{pw}@redis.internal:6379/abc",  # redis-py would use database 0
        "redis://default:{pw}@:6379/0",
    ],
)
def test_a_malformed_redis_url_stops_start_up_in_one_line_without_its_password(tmp_path, value):
    """Found by a review: redis-py's traceback quoted what followed an unencoded "/" of
    the password as the port; a path that is not a number was read as database 0."""
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, REDIS_URL=value.format(pw=URI_PASSWORD))
    message = str(raised.value)
    assert message.startswith("REDIS_URL") and "\n" not in message
    assert URI_PASSWORD not in message and "Zx9" not in message


@pytest.mark.parametrize(
    "value",
    [
        "redis://127.0.0.1:6379/0",
        "redis://h",
        "redis://h:6379/",
        "rediss://u:p%2F@h:6380/15",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_well_formed_redis_urls_are_kept(tmp_path, value):
    assert load(tmp_path, REDIS_URL=value).redis_url == value


def test_redis_url_without_redis_py_installed_names_the_extra(tmp_path, monkeypatch):
    """Found by a review: a project generated without Redis, given REDIS_URL, stopped
    with ModuleNotFoundError's traceback."""
    real_find_spec = config.importlib.util.find_spec
    monkeypatch.setattr(
        config.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "redis" else real_find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"pip install 'transom-socketio\[redis\]'"):
        load(tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")
