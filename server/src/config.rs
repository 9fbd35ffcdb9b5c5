//! Layered settings: built-in defaults, then the TOML file given with
//! `--config`, then `ALLIANCE_*` environment variables. Everything is
//! validated once, at start, into [`Settings`]; an invalid value stops the
//! start with a message that names the setting and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::signature::{WebhookPublicKey, WebhookSecret};
use crate::token::{ServerKey, hex};

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Which chat platform API the service talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformKind {
    Generic,
    Chatwoot,
}

/// Keys of the Chatwoot custom attributes (or label prefixes) that carry a
/// chat's organization, topic and child age group.
#[derive(Clone, Debug)]
pub struct ChatwootAttributes {
    pub organization: String,
    pub topic: String,
    pub child_age_group: String,
}

/// The keys an `[[admin_tokens]]` entry takes.
const ADMIN_TOKEN_KEYS: [&str; 3] = ["label", "sha256", "organizations"];
/// The `organizations` entry that lets an admin token see every organization.
const ALL_ORGANIZATIONS: &str = "*";

/// An admin token that may see only some organizations, stored as the hex
/// SHA-256 of the token.
#[derive(Clone, Debug)]
pub struct ScopedAdminToken {
    pub label: String,
    pub sha256: [u8; 32],
    /// Organizations the token may see. Empty means all of them, written
    /// `organizations = ["*"]` in the config file.
    pub organizations: Vec<String>,
}

/// Validated settings of the service.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: Url,
    /// The organization's privacy notice, linked from the questionnaire's
    /// introduction. Without it the introduction has no privacy link.
    pub privacy_url: Option<Url>,
    pub data_dir: PathBuf,
    /// Where `POST /api/admin/backup` writes backups.
    pub backup_dir: PathBuf,
    pub secret_key: Option<ServerKey>,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub webhook_public_keys: Vec<WebhookPublicKey>,
    pub platform_kind: PlatformKind,
    pub platform_url: Option<Url>,
    pub platform_token: Option<Secret>,
    pub platform_signing_secret: Option<WebhookSecret>,
    pub platform_origins: Vec<String>,
    pub chatwoot_webhook_secret: Option<Secret>,
    pub chatwoot_account_id: Option<u64>,
    /// Where organization, topic and age group come from in a Chatwoot
    /// conversation: the custom attribute with this key, or else a label
    /// `key:value`.
    pub chatwoot_attributes: ChatwootAttributes,
    /// Seconds between two polls of Chatwoot for resolved conversations.
    pub chatwoot_reconcile_interval: Duration,
    pub admin_token: Option<Secret>,
    pub admin_tokens: Vec<ScopedAdminToken>,
    pub trusted_proxies: Vec<IpAddr>,
    pub questionnaire_expiry: Duration,
    pub retention_days: u32,
    pub min_cell_size: u32,
    /// Whether the peer-review view shows figures per nurse. Off by default,
    /// because per-nurse figures need the works council's consent.
    pub per_nurse_figures: bool,
    /// Whether a nurse who submitted her answers sees the parent's answers
    /// for the same chat. Off by default.
    pub nurse_feedback: bool,
    /// Fewest messages each side must have sent for a chat to be invited;
    /// 0 invites every chat. Applies only when the platform sends message counts.
    pub min_messages_per_side: u64,
    /// Failed webhook signatures allowed per client address and minute.
    pub failed_signature_limit: u32,
    /// Questionnaire API calls allowed per token and minute.
    pub questionnaire_call_limit: u32,
    /// Consecutive temporary failures that pause delivery (circuit breaker).
    pub breaker_threshold: u32,
    /// Most delivery attempts per second; 0 means no limit.
    pub delivery_rate_per_second: u32,
    /// Deliveries to the platform in flight at once.
    pub delivery_concurrency: usize,
    /// How long delivery of an invitation is retried before it is dead-lettered.
    pub delivery_horizon: Duration,
    /// Timeout of one delivery attempt, connect included.
    pub delivery_timeout: Duration,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
}

/// A configuration problem, naming the setting and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(variable: &str, problem: impl fmt::Display) -> ConfigError {
    ConfigError(format!("setting {variable} {problem}"))
}

/// Names of all settings: config-file key and environment variable.
const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "privacy_url",
    "data_dir",
    "backup_dir",
    "secret_key",
    "webhook_secrets",
    "webhook_public_keys",
    "platform_kind",
    "platform_url",
    "platform_token",
    "platform_signing_secret",
    "platform_origins",
    "chatwoot_webhook_secret",
    "chatwoot_account_id",
    "chatwoot_organization_attribute",
    "chatwoot_topic_attribute",
    "chatwoot_age_group_attribute",
    "chatwoot_reconcile_seconds",
    "admin_token",
    "trusted_proxies",
    "questionnaire_expiry_hours",
    "retention_days",
    "min_cell_size",
    "per_nurse_figures",
    "nurse_feedback",
    "min_messages_per_side",
    "failed_signature_limit",
    "questionnaire_call_limit",
    "delivery_concurrency",
    "delivery_rate_per_second",
    "breaker_threshold",
    "delivery_horizon_hours",
    "delivery_timeout_ms",
    "cache_mb",
];

fn env_name(key: &str) -> String {
    format!("ALLIANCE_{}", key.to_ascii_uppercase())
}

/// Variables that the project's tests and benchmarks read, not the service.
const TOOL_VARIABLES: &[&str] = &[
    "ALLIANCE_BIN",
    "ALLIANCE_SKIP_BROWSER_TESTS",
    "ALLIANCE_BENCH_CHATS",
    "ALLIANCE_BENCH_STORE",
    "ALLIANCE_DOCS_SCREENSHOTS",
];

/// Names of the `ALLIANCE_*` variables in `variables` that are no setting,
/// such as a misspelled one, sorted. The service ignores them.
pub fn unknown_variables(variables: impl Iterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> = variables
        .filter(|name| name.starts_with("ALLIANCE_"))
        .filter(|name| !KEYS.iter().any(|key| env_name(key) == *name) && !TOOL_VARIABLES.contains(&name.as_str()))
        .collect();
    unknown.sort();
    unknown
}

/// Names of the environment's `ALLIANCE_*` variables that are no setting.
pub fn unknown_environment_variables() -> Vec<String> {
    unknown_variables(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))
}

/// Raw setting values, before validation, with where each came from.
#[derive(Default, Debug)]
pub struct RawSettings {
    values: BTreeMap<&'static str, (String, String)>,
    admin_tokens: Vec<toml::Value>,
}

impl RawSettings {
    /// Reads the config file (if given) and then the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut raw = RawSettings::default();
        if let Some(path) = config_file {
            raw.read_file(path)?;
        }
        for key in KEYS {
            let variable = env_name(key);
            if let Ok(value) = std::env::var(&variable) {
                if value.trim().is_empty() {
                    return Err(invalid(&variable, "is set but empty; give it a value or unset it"));
                }
                raw.values.insert(key, (value, variable));
            }
        }
        Ok(raw)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError(format!("cannot read config file {}: {error}", path.display())))?;
        let table: toml::Table = toml::from_str(&text).map_err(|error| {
            ConfigError(format!(
                "config file {} is not valid TOML: {}",
                path.display(),
                describe_toml_error(&text, &error)
            ))
        })?;
        for (name, value) in table {
            if name == "admin_tokens" {
                let toml::Value::Array(entries) = value else {
                    return Err(ConfigError(format!(
                        "config file {}: admin_tokens must be an array of tables ([[admin_tokens]])",
                        path.display()
                    )));
                };
                self.admin_tokens = entries;
                continue;
            }
            let Some(key) = KEYS.iter().find(|key| **key == name) else {
                return Err(ConfigError(format!(
                    "config file {}: unknown setting {name:?}; known settings are {}",
                    path.display(),
                    KEYS.join(", ")
                )));
            };
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                // Hours and rates may have fractions; the setting's own check
                // rejects a fraction where it needs a whole number.
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(text) => Ok(text),
                        other => Err(ConfigError(format!(
                            "config file {}: {name} must hold strings, found {other}",
                            path.display()
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => {
                    return Err(ConfigError(format!(
                        "config file {}: {name} must be a string, a number or true/false, found {other}",
                        path.display()
                    )));
                }
            };
            self.values.insert(key, (text, format!("{name} in {}", path.display())));
        }
        Ok(())
    }

    /// Sets a value, replacing any configured one.
    pub fn set(&mut self, key: &'static str, value: String, source: String) {
        self.values.insert(key, (value, source));
    }

    /// Sets a value unless one is configured; used for generated development secrets.
    pub fn set_default(&mut self, key: &'static str, value: String, source: String) {
        self.values.entry(key).or_insert((value, source));
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn get(&self, key: &'static str) -> Option<(&str, String)> {
        self.values
            .get(key)
            .map(|(value, source)| (value.as_str(), source.clone()))
    }

    fn name(&self, key: &'static str) -> String {
        self.values
            .get(key)
            .map(|(_, source)| source.clone())
            .unwrap_or_else(|| env_name(key))
    }

    /// Validates every value into [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let listen = match self.get("listen") {
            Some((value, name)) => value.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    &name,
                    format_args!("= {value:?} is not an address and port such as 127.0.0.1:8080"),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };

        let public_url = match self.get("public_url") {
            Some((value, name)) => parse_url(value, &name)?,
            None => Url::parse(&format!("http://{listen}")).expect("socket address forms a URL"),
        };

        let privacy_url = match self.get("privacy_url") {
            Some((value, name)) => Some(parse_url(value, &name)?),
            None => None,
        };

        let data_dir = self
            .get("data_dir")
            .map(|(value, _)| PathBuf::from(value))
            .unwrap_or_else(|| "./data".into());

        let backup_dir = self
            .get("backup_dir")
            .map(|(value, _)| PathBuf::from(value))
            .unwrap_or_else(|| "./backups".into());

        let secret_key = match self.get("secret_key") {
            Some((value, name)) => Some(parse_server_key(value, &name)?),
            None => None,
        };

        let webhook_secrets = match self.get("webhook_secrets") {
            Some((value, name)) if value.trim() != value => {
                return Err(invalid(&name, "has white space before or after it; remove it"));
            }
            Some((value, name)) => split_list(value)
                .map(|entry| {
                    if entry == "v1" || entry == "v1a" {
                        return Err(invalid(
                            &name,
                            "holds a signature (it starts with \"v1,\"), not a secret; paste the secret that starts with \"whsec_\"",
                        ));
                    }
                    WebhookSecret::parse(entry).map_err(|problem| invalid(&name, format_args!("has a secret that {problem}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let webhook_public_keys = match self.get("webhook_public_keys") {
            Some((value, name)) => split_list(value)
                .map(|entry| {
                    WebhookPublicKey::parse(entry)
                        .map_err(|problem| invalid(&name, format_args!("has a key that {problem}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let platform_kind = match self.get("platform_kind") {
            None => PlatformKind::Generic,
            Some(("generic", _)) => PlatformKind::Generic,
            Some(("chatwoot", _)) => PlatformKind::Chatwoot,
            Some((value, name)) => {
                return Err(invalid(
                    &name,
                    format_args!("= {value:?} must be \"generic\" or \"chatwoot\""),
                ));
            }
        };

        let platform_url = match self.get("platform_url") {
            Some((value, name)) => Some(parse_url(value, &name)?),
            None => None,
        };

        let platform_token = self.secret_text("platform_token")?;

        let platform_signing_secret = match self.get("platform_signing_secret") {
            Some((value, name)) => Some(WebhookSecret::parse(value).map_err(|problem| invalid(&name, problem))?),
            None => None,
        };

        let platform_origins = match self.get("platform_origins") {
            Some((value, name)) => split_list(value)
                .map(|origin| parse_origin(origin, &name))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let chatwoot_webhook_secret = self.secret_text("chatwoot_webhook_secret")?;
        let chatwoot_account_id = self.number::<u64>("chatwoot_account_id", 1, u64::MAX)?;
        let attribute = |key: &'static str, default: &str| {
            self.get(key)
                .map(|(value, _)| value.to_string())
                .unwrap_or_else(|| default.to_string())
        };
        let chatwoot_attributes = ChatwootAttributes {
            organization: attribute("chatwoot_organization_attribute", "organization"),
            topic: attribute("chatwoot_topic_attribute", "topic"),
            child_age_group: attribute("chatwoot_age_group_attribute", "child_age_group"),
        };
        let reconcile_seconds = self
            .number::<u64>("chatwoot_reconcile_seconds", 1, 86_400)?
            .unwrap_or(60);
        let admin_token = self.secret_text("admin_token")?;
        if let Some(token) = &admin_token {
            if token.expose().len() < 16 {
                return Err(invalid(
                    &self.name("admin_token"),
                    "is shorter than 16 characters; use a long random token",
                ));
            }
        }
        let admin_tokens = self.scoped_admin_tokens()?;

        let trusted_proxies = match self.get("trusted_proxies") {
            Some((value, name)) => split_list(value)
                .map(|entry| {
                    entry
                        .parse::<IpAddr>()
                        .map_err(|_| invalid(&name, format_args!("has {entry:?}, which is not an IP address")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        // Fractions of an hour are allowed, so tests can watch a questionnaire expire.
        let expiry_hours = self
            .number::<f64>("questionnaire_expiry_hours", 0.0001, 24.0 * 365.0)?
            .unwrap_or(168.0);
        let retention_days = self.number::<u32>("retention_days", 1, 36_500)?.unwrap_or(730);
        let min_cell_size = self.number::<u32>("min_cell_size", 1, 1_000_000)?.unwrap_or(10);
        let per_nurse_figures = self.flag("per_nurse_figures")?.unwrap_or(false);
        let nurse_feedback = self.flag("nurse_feedback")?.unwrap_or(false);
        let failed_signature_limit = self
            .number::<u32>("failed_signature_limit", 1, 1_000_000)?
            .unwrap_or(120);
        let questionnaire_call_limit = self
            .number::<u32>("questionnaire_call_limit", 1, 1_000_000)?
            .unwrap_or(120);
        let min_messages_per_side = self.number::<u64>("min_messages_per_side", 0, 10_000)?.unwrap_or(0);
        let delivery_rate_per_second = self
            .number::<u32>("delivery_rate_per_second", 0, 100_000)?
            .unwrap_or(200);
        let breaker_threshold = self.number::<u32>("breaker_threshold", 1, 10_000)?.unwrap_or(10);
        let delivery_concurrency = self.number::<usize>("delivery_concurrency", 1, 1024)?.unwrap_or(16);
        let horizon_hours = self.number::<u64>("delivery_horizon_hours", 1, 24 * 30)?.unwrap_or(24);
        let timeout_ms = self
            .number::<u64>("delivery_timeout_ms", 100, 120_000)?
            .unwrap_or(10_000);
        let cache_mb = self.number::<u64>("cache_mb", 1, 65_536)?.unwrap_or(16);

        Ok(Settings {
            listen,
            public_url,
            privacy_url,
            data_dir,
            backup_dir,
            secret_key,
            webhook_secrets,
            webhook_public_keys,
            platform_kind,
            platform_url,
            platform_token,
            platform_signing_secret,
            platform_origins,
            chatwoot_webhook_secret,
            chatwoot_account_id,
            chatwoot_attributes,
            chatwoot_reconcile_interval: Duration::from_secs(reconcile_seconds),
            admin_token,
            admin_tokens,
            trusted_proxies,
            questionnaire_expiry: Duration::from_secs_f64(expiry_hours * 3600.0),
            retention_days,
            min_cell_size,
            per_nurse_figures,
            nurse_feedback,
            min_messages_per_side,
            failed_signature_limit,
            questionnaire_call_limit,
            delivery_concurrency,
            delivery_rate_per_second,
            breaker_threshold,
            delivery_horizon: Duration::from_secs(horizon_hours * 3600),
            delivery_timeout: Duration::from_millis(timeout_ms),
            cache_bytes: cache_mb * 1024 * 1024,
        })
    }

    fn secret_text(&self, key: &'static str) -> Result<Option<Secret>, ConfigError> {
        let Some((value, name)) = self.get(key) else {
            return Ok(None);
        };
        if value.trim() != value {
            return Err(invalid(&name, "has white space before or after it; remove it"));
        }
        if value.is_empty() {
            return Err(invalid(&name, "is empty; set a value or remove the setting"));
        }
        Ok(Some(Secret::new(value)))
    }

    /// Parses an on/off setting: `true` or `false`, also `1` or `0`.
    fn flag(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some((value, name)) = self.get(key) else {
            return Ok(None);
        };
        match value {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(invalid(
                &name,
                format_args!("= {value:?} must be true or false (or 1 or 0)"),
            )),
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(
        &self,
        key: &'static str,
        min: T,
        max: T,
    ) -> Result<Option<T>, ConfigError> {
        let Some((value, name)) = self.get(key) else {
            return Ok(None);
        };
        match value.parse::<T>() {
            Ok(number) if number >= min && number <= max => Ok(Some(number)),
            _ => Err(invalid(
                &name,
                format_args!("= {value:?} must be a number from {min} to {max}"),
            )),
        }
    }

    fn scoped_admin_tokens(&self) -> Result<Vec<ScopedAdminToken>, ConfigError> {
        let mut tokens = Vec::new();
        for (index, entry) in self.admin_tokens.iter().enumerate() {
            let problem = |what: &str| ConfigError(format!("admin_tokens entry {}: {what}", index + 1));
            let table = entry
                .as_table()
                .ok_or_else(|| problem("must be a table with label, sha256 and organizations"))?;
            if let Some(unknown) = table.keys().find(|key| !ADMIN_TOKEN_KEYS.contains(&key.as_str())) {
                return Err(problem(&format!(
                    "unknown key {unknown:?}; an entry takes only label, sha256 and organizations"
                )));
            }
            let label = table
                .get("label")
                .and_then(|v| v.as_str())
                .ok_or_else(|| problem("needs a label, e.g. label = \"quality team Utrecht\""))?;
            let digest = table
                .get("sha256")
                .and_then(|v| v.as_str())
                .ok_or_else(|| problem("needs sha256 = the hex SHA-256 of the token (echo -n TOKEN | sha256sum)"))?;
            let sha256 = parse_hex32(digest).ok_or_else(|| problem("sha256 must be 64 hex digits"))?;
            let names = table
                .get("organizations")
                .ok_or_else(|| {
                    problem(
                        "needs organizations = the list of organizations the token may see, \
                         e.g. [\"GGD Regio Utrecht\"], or [\"*\"] for all of them",
                    )
                })?
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| problem("organizations must be a list of names, e.g. [\"GGD Regio Utrecht\"]"))?;
            if names.iter().any(|name| name.trim().is_empty()) {
                return Err(problem("organizations holds an empty name"));
            }
            let organizations = match names.as_slice() {
                [] => {
                    return Err(problem(
                        "organizations is empty, so the token would see nothing; \
                         list the organizations it may see, or [\"*\"] for all of them",
                    ));
                }
                [all] if all == ALL_ORGANIZATIONS => Vec::new(),
                _ if names.iter().any(|name| name == ALL_ORGANIZATIONS) => {
                    return Err(problem(
                        "organizations mixes \"*\" with names; use [\"*\"] alone for all organizations",
                    ));
                }
                _ => names,
            };
            tokens.push(ScopedAdminToken {
                label: label.to_string(),
                sha256,
                organizations,
            });
        }
        Ok(tokens)
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|entry| !entry.is_empty())
}

fn parse_url(value: &str, name: &str) -> Result<Url, ConfigError> {
    // Checked before parsing, so no error message repeats a password. Only
    // the part before the path counts: an `@` in a query is no credential.
    let authority = value.split("://").nth(1).unwrap_or(value);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid(
            name,
            "contains a user name or password (\"user:password@\"); remove it, \
             because credentials go in the token settings, not in URLs",
        ));
    }
    let url = Url::parse(value).map_err(|error| {
        invalid(
            name,
            format_args!("= {value:?} is not a URL ({error}); use e.g. https://chat.example.nl"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            name,
            format_args!("= {value:?} must be an http or https URL with a host"),
        ));
    }
    Ok(url)
}

fn parse_origin(value: &str, name: &str) -> Result<String, ConfigError> {
    let url = parse_url(value, name)?;
    if url.path() != "/" || url.query().is_some() {
        return Err(invalid(
            name,
            format_args!("has {value:?}; an origin is scheme, host and port only, e.g. https://chat.example.nl"),
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn parse_server_key(value: &str, name: &str) -> Result<ServerKey, ConfigError> {
    if value.trim() != value {
        return Err(invalid(name, "has white space before or after it; remove it"));
    }
    let bytes = STANDARD.decode(value).map_err(|_| {
        invalid(
            name,
            "is not valid base64; generate one with: head -c 32 /dev/urandom | base64",
        )
    })?;
    ServerKey::from_bytes(bytes).map_err(|problem| invalid(name, problem))
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, chunk) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[index] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Returns the hex SHA-256 of an admin token, the form the config file stores.
pub fn admin_token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Describes a TOML syntax error by line, column and message. The `Display`
/// of `toml::de::Error` quotes the offending line, which may hold a secret.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return message.to_string();
    };
    let before = &text.as_bytes()[..start];
    let line = before.iter().filter(|byte| **byte == b'\n').count() + 1;
    let line_start = before.iter().rposition(|byte| *byte == b'\n').map_or(0, |at| at + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

pub const DEV_SECRETS_FILE: &str = "dev-secrets.toml";

/// Settings that a development service generates when they are not configured.
pub const DEVELOPMENT_SECRETS: [&str; 5] = [
    "secret_key",
    "webhook_secrets",
    "platform_token",
    "platform_signing_secret",
    "admin_token",
];

/// Fills every development secret that is not configured with a fresh
/// value, without writing anything; `check-config` validates with these.
pub fn add_placeholder_secrets(raw: &mut RawSettings) {
    for key in DEVELOPMENT_SECRETS {
        raw.set_default(key, generate_secret(key), "a generated development secret".into());
    }
}

/// Fills every secret that is not configured from the development secrets
/// file in the data directory, generating the file if needed. Only for a
/// service on a loopback address; the values are never printed.
pub fn add_development_secrets(raw: &mut RawSettings, data_dir: &Path) -> Result<Option<PathBuf>, ConfigError> {
    let needed = DEVELOPMENT_SECRETS;
    if needed.iter().all(|key| raw.is_set(key)) {
        return Ok(None);
    }

    let path = data_dir.join(DEV_SECRETS_FILE);
    let mut stored: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|error| {
            ConfigError(format!(
                "development secrets file {} is damaged ({}); delete it to make new ones",
                path.display(),
                describe_toml_error(&text, &error)
            ))
        })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(error) => return Err(ConfigError(format!("cannot read {}: {error}", path.display()))),
    };

    let mut changed = false;
    for key in needed {
        if !stored.contains_key(key) {
            stored.insert(key.to_string(), toml::Value::String(generate_secret(key)));
            changed = true;
        }
    }
    if changed {
        write_private_file(&path, &toml::to_string(&stored).expect("a table of strings serialises"))?;
    }

    for key in needed {
        if let Some(value) = stored.get(key).and_then(|v| v.as_str()) {
            raw.set_default(key, value.to_string(), format!("{key} in {}", path.display()));
        }
    }
    Ok(Some(path))
}

fn generate_secret(key: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    match key {
        "webhook_secrets" | "platform_signing_secret" => WebhookSecret::generate().1,
        "secret_key" => STANDARD.encode(bytes),
        _ => hex(&bytes),
    }
}

fn write_private_file(path: &Path, contents: &str) -> Result<(), ConfigError> {
    use std::io::Write;

    let fail = |error: std::io::Error| ConfigError(format!("cannot write {}: {error}", path.display()));
    if let Some(parent) = path.parent() {
        crate::store::create_private_dir(parent).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

impl Settings {
    /// Describes the optional features that are off by default, each as on or
    /// off with its setting, in one line for the start-up log.
    pub fn optional_features(&self) -> String {
        let state = |on: bool| if on { "on" } else { "off" };
        let consent = if self.per_nurse_figures {
            ", which needs the works council's consent"
        } else {
            ""
        };
        let privacy = if self.privacy_url.is_some() {
            "linked"
        } else {
            "not linked; set ALLIANCE_PRIVACY_URL"
        };
        format!(
            "optional features: per-nurse figures {} (ALLIANCE_PER_NURSE_FIGURES{consent}), \
             nurse feedback {} (ALLIANCE_NURSE_FEEDBACK), privacy notice {privacy}",
            state(self.per_nurse_figures),
            state(self.nurse_feedback),
        )
    }

    /// Checks what a service needs before it accepts traffic: secrets, and on
    /// a non-loopback address an https public URL.
    pub fn check_ready_to_serve(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.secret_key.is_none() {
            problems.push(
                "ALLIANCE_SECRET_KEY is not set: generate one with `head -c 32 /dev/urandom | base64`".to_string(),
            );
        }
        if self.webhook_secrets.is_empty() && self.platform_kind == PlatformKind::Generic {
            problems.push(
                "ALLIANCE_WEBHOOK_SECRETS is not set: use the whsec_ secret your platform signs webhooks with".into(),
            );
        }
        if self.platform_url.is_none() {
            problems.push("ALLIANCE_PLATFORM_URL is not set: use the base URL of the chat platform's API".into());
        }
        if self.platform_token.is_none() {
            problems.push("ALLIANCE_PLATFORM_TOKEN is not set: use the API token the platform gave you".into());
        }
        if self.platform_kind == PlatformKind::Chatwoot {
            if self.chatwoot_webhook_secret.is_none() {
                problems.push(
                    "ALLIANCE_CHATWOOT_WEBHOOK_SECRET is not set: copy the secret Chatwoot shows for the webhook"
                        .into(),
                );
            }
            if self.chatwoot_account_id.is_none() {
                problems.push(
                    "ALLIANCE_CHATWOOT_ACCOUNT_ID is not set: use the number in Chatwoot's URL after /accounts/".into(),
                );
            }
        }
        if self.platform_kind == PlatformKind::Generic && self.platform_signing_secret.is_none() {
            problems.push(
                "ALLIANCE_PLATFORM_SIGNING_SECRET is not set: use a whsec_ secret shared with the platform".into(),
            );
        }
        if self.admin_token.is_none() && self.admin_tokens.is_empty() {
            problems.push(
                "ALLIANCE_ADMIN_TOKEN is not set and the config file has no [[admin_tokens]]: reports cannot be read"
                    .into(),
            );
        }
        if !self.listen.ip().is_loopback() && self.public_url.scheme() != "https" {
            problems.push(format!(
                "ALLIANCE_PUBLIC_URL = {} must be an https URL when the service listens on {} (not loopback)",
                self.public_url, self.listen
            ));
        }
        if let Some(privacy_url) = &self.privacy_url
            && !self.listen.ip().is_loopback()
            && privacy_url.scheme() != "https"
        {
            problems.push(format!(
                "ALLIANCE_PRIVACY_URL = {privacy_url} must be an https URL when the service listens on {} (not loopback)",
                self.listen
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn raw(pairs: &[(&'static str, &str)]) -> RawSettings {
        let mut raw = RawSettings::default();
        for (key, value) in pairs {
            raw.values.insert(key, (value.to_string(), env_name(key)));
        }
        raw
    }

    #[test]
    fn defaults_apply() {
        let settings = raw(&[]).validate().unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.questionnaire_expiry, Duration::from_secs(168 * 3600));
        assert_eq!(settings.retention_days, 730);
        assert_eq!(settings.min_cell_size, 10);
        assert!(!settings.per_nurse_figures);
        assert!(!settings.nurse_feedback);
    }

    #[test]
    fn flags_parse_true_and_false() {
        let settings = raw(&[("per_nurse_figures", "true"), ("nurse_feedback", "1")])
            .validate()
            .unwrap();
        assert!(settings.per_nurse_figures);
        assert!(settings.nurse_feedback);
        let settings = raw(&[("per_nurse_figures", "false"), ("nurse_feedback", "0")])
            .validate()
            .unwrap();
        assert!(!settings.per_nurse_figures);
        assert!(!settings.nurse_feedback);
    }

    #[test]
    fn optional_features_name_each_state() {
        let off = raw(&[]).validate().unwrap().optional_features();
        assert_eq!(
            off,
            "optional features: per-nurse figures off (ALLIANCE_PER_NURSE_FIGURES), \
             nurse feedback off (ALLIANCE_NURSE_FEEDBACK), privacy notice not linked; set ALLIANCE_PRIVACY_URL"
        );
        let on = raw(&[
            ("per_nurse_figures", "true"),
            ("nurse_feedback", "true"),
            ("privacy_url", "https://ggd.example.nl/privacy"),
        ])
        .validate()
        .unwrap()
        .optional_features();
        assert!(on.contains("per-nurse figures on"), "{on}");
        assert!(on.contains("works council"), "{on}");
        assert!(on.contains("nurse feedback on"), "{on}");
        assert!(on.contains("privacy notice linked"), "{on}");
    }

    #[test]
    fn url_with_credentials_is_rejected_without_echo() {
        let error = raw(&[("platform_url", "https://bot:geheim@chat.example.nl/api")])
            .validate()
            .unwrap_err();
        assert!(error.0.contains("user name or password"), "{error}");
        assert!(!error.0.contains("geheim"), "the password is repeated: {error}");
        // An @ after the host is part of the path or query, not a credential.
        let settings = raw(&[(
            "privacy_url",
            "https://ggd.example.nl/privacy?contact=privacy@ggd.example.nl",
        )])
        .validate()
        .unwrap();
        assert_eq!(
            settings.privacy_url.unwrap().query(),
            Some("contact=privacy@ggd.example.nl")
        );
    }

    #[test]
    fn privacy_url_must_be_https_off_loopback() {
        let error = raw(&[("privacy_url", "ggd.example.nl/privacy")])
            .validate()
            .unwrap_err();
        assert!(error.0.contains("is not a URL"), "{error}");
        let plain = raw(&[
            ("listen", "0.0.0.0:8080"),
            ("public_url", "https://vragenlijst.example.nl"),
            ("privacy_url", "http://ggd.example.nl/privacy"),
        ])
        .validate()
        .unwrap();
        let problems = plain.check_ready_to_serve().unwrap_err();
        assert!(problems.0.contains("ALLIANCE_PRIVACY_URL"), "{problems}");
    }

    #[test]
    fn misspelled_variable_is_unknown() {
        let names = [
            "ALLIANCE_LISTEN",
            "ALLIANCE_LISTEM",
            "ALLIANCE_BIN",
            "HOME",
            "ALLIANCE_ADMIN_TOKENS",
        ];
        let unknown = unknown_variables(names.iter().map(|name| name.to_string()));
        assert_eq!(unknown, ["ALLIANCE_ADMIN_TOKENS", "ALLIANCE_LISTEM"]);
    }

    /// Reads `text` as a config file.
    fn read_config_text(text: &str) -> Result<RawSettings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alliance.toml");
        std::fs::write(&path, text).unwrap();
        let mut raw = RawSettings::default();
        raw.read_file(&path)?;
        Ok(raw)
    }

    #[test]
    fn decimal_number_in_config_file_is_read() {
        let settings = read_config_text("questionnaire_expiry_hours = 1.5\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(settings.questionnaire_expiry, std::time::Duration::from_secs(5_400));
    }

    #[test]
    fn invalid_toml_error_does_not_quote_the_line() {
        let error = read_config_text("bind = \"127.0.0.1:8080\"\nsecret_key = \"SECRETVALUE\n")
            .expect_err("an unterminated string is invalid TOML")
            .0;
        assert!(!error.contains("SECRETVALUE"), "{error}");
        assert!(error.contains("line 2, column"), "{error}");
        assert!(error.contains("not valid TOML"), "{error}");
    }

    #[test]
    fn flag_in_config_file_may_be_a_toml_boolean() {
        let settings = read_config_text("nurse_feedback = true\nper_nurse_figures = false\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(settings.nurse_feedback);
        assert!(!settings.per_nurse_figures);
    }

    fn admin_tokens_from(entry: &str) -> Result<Vec<ScopedAdminToken>, ConfigError> {
        let digest = "ab".repeat(32);
        read_config_text(&format!(
            "[[admin_tokens]]\nlabel = \"team\"\nsha256 = \"{digest}\"\n{entry}\n"
        ))?
        .validate()
        .map(|settings| settings.admin_tokens)
    }

    #[test]
    fn admin_token_scope_listed_or_star() {
        let tokens = admin_tokens_from("organizations = [\"GGD Regio Utrecht\"]").unwrap();
        assert_eq!(tokens[0].organizations, ["GGD Regio Utrecht"]);
        let tokens = admin_tokens_from("organizations = [\"*\"]").unwrap();
        assert!(tokens[0].organizations.is_empty(), "[\"*\"] means every organization");
    }

    #[test]
    fn admin_token_unclear_scope_rejected() {
        // A misspelt, missing or empty list must never widen a token to every organization.
        let cases = [
            (
                "organisations = [\"GGD Regio Utrecht\"]",
                "unknown key \"organisations\"",
            ),
            ("", "needs organizations"),
            ("organizations = []", "organizations is empty"),
            ("organizations = [\"*\", \"GGD Regio Utrecht\"]", "mixes \"*\""),
            ("organizations = [\" \"]", "empty name"),
            ("organizations = \"GGD Regio Utrecht\"", "must be a list"),
        ];
        for (entry, expected) in cases {
            let error = admin_tokens_from(entry).expect_err(entry).to_string();
            assert!(error.contains("admin_tokens entry 1"), "{entry}: {error}");
            assert!(error.contains(expected), "{entry}: {error}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: &[(&'static str, &str, &str)] = &[
            (
                "webhook_secrets",
                " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "ALLIANCE_WEBHOOK_SECRETS",
            ),
            (
                "webhook_secrets",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                "signature",
            ),
            ("platform_url", "not a url", "ALLIANCE_PLATFORM_URL"),
            ("listen", "8080", "ALLIANCE_LISTEN"),
            ("secret_key", "c2hvcnQ=", "at least 32"),
            ("min_cell_size", "0", "ALLIANCE_MIN_CELL_SIZE"),
            ("per_nurse_figures", "yes", "ALLIANCE_PER_NURSE_FIGURES"),
            ("nurse_feedback", "on", "ALLIANCE_NURSE_FEEDBACK"),
            ("admin_token", "token ", "white space"),
        ];
        for (key, value, expected) in cases {
            let error = raw(&[(key, value)]).validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
    }

    #[test]
    fn public_address_needs_https_and_secrets() {
        let settings = raw(&[("listen", "0.0.0.0:8080"), ("public_url", "http://example.nl")])
            .validate()
            .unwrap();
        let error = settings.check_ready_to_serve().unwrap_err().to_string();
        assert!(error.contains("https"), "{error}");
        assert!(error.contains("ALLIANCE_SECRET_KEY"), "{error}");
    }

    /// Names of the settings that `validate` reads, found in this file's
    /// source: the string literal that each reading helper is called with.
    fn keys_read_by_source() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config.rs");
        let source = std::fs::read_to_string(path).unwrap();
        // Joining the trimmed lines undoes rustfmt's breaks in method chains.
        let code: String = source
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .map(str::trim)
            .collect();
        let mut keys = BTreeSet::new();
        for call in [
            "self.get(",
            "self.flag(",
            "self.secret_text(",
            "self.name(",
            "attribute(",
            ">(",
        ] {
            for (start, _) in code.match_indices(call) {
                let rest = &code[start + call.len()..];
                let Some(literal) = rest.strip_prefix('"') else {
                    continue;
                };
                let name: String = literal.chars().take_while(|c| *c != '"').collect();
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.insert(name);
                }
            }
        }
        keys
    }

    /// Collects the `ALLIANCE_*` names in the first column of the tables under `heading`.
    fn documented_settings(file: &str, heading: &str) -> BTreeSet<String> {
        let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let section = text
            .split("\n## ")
            .find(|section| section.lines().next() == Some(heading))
            .unwrap_or_else(|| panic!("{file} has no section \"## {heading}\""));
        section
            .lines()
            .filter_map(|line| line.strip_prefix("| `ALLIANCE_"))
            .filter_map(|rest| rest.split('`').next())
            .map(|name| format!("ALLIANCE_{name}"))
            .collect()
    }

    #[test]
    fn source_reads_only_known_settings() {
        let read = keys_read_by_source();
        assert!(read.len() >= 30, "the source scan finds the settings: {read:?}");
        for key in &read {
            assert!(KEYS.contains(&key.as_str()), "config.rs reads {key}, which KEYS lacks");
        }
        for key in KEYS {
            assert!(read.contains(*key), "KEYS has {key}, which validate() never reads");
        }
    }

    #[test]
    fn every_setting_is_in_the_complete_tables() {
        let variables: BTreeSet<String> = keys_read_by_source().iter().map(|key| env_name(key)).collect();
        for (file, heading) in [
            ("docs/operations.md", "Settings"),
            ("docs/nl/beheer.md", "Instellingen"),
        ] {
            let documented = documented_settings(file, heading);
            for variable in &variables {
                assert!(documented.contains(variable), "{file} (## {heading}) lacks {variable}");
            }
            for variable in &documented {
                assert!(
                    variables.contains(variable),
                    "{file} (## {heading}) lists {variable}, which is no setting"
                );
            }
        }
        for (file, heading) in [("README.md", "Run the service"), ("README.nl.md", "De dienst draaien")] {
            for variable in documented_settings(file, heading) {
                assert!(
                    variables.contains(&variable),
                    "{file} lists {variable}, which is no setting"
                );
            }
        }
    }

    #[test]
    fn development_secrets_are_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = RawSettings::default();
        add_development_secrets(&mut first, dir.path()).unwrap();
        let mut second = RawSettings::default();
        add_development_secrets(&mut second, dir.path()).unwrap();
        assert_eq!(
            first.get("admin_token").unwrap().0,
            second.get("admin_token").unwrap().0
        );
        let settings = first.validate().unwrap();
        assert!(settings.secret_key.is_some());
        assert_eq!(settings.webhook_secrets.len(), 1);
    }
}
