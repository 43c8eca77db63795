//! Parameters: the name/value pairs a connector receives in `args_dict`.
//!
//! A parameter is **static** (value fixed by the CA account or profile), **dynamic** (no value
//! in the profile; supplied with each request), and/or **sensitive** (invariant 2: the value
//! reaches only the connector call; everywhere else it is `sensitive: true, set: bool`).
//! A sensitive value is never written in a definition: it is a reference to an environment
//! variable or a file, or it is set with `certhost secret set` and stored sealed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Where a parameter's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ValueSource {
    /// `{ env = "NAME" }`: read from the host's environment at call time.
    Env {
        /// Variable name.
        env: String,
    },
    /// `{ file = "PATH" }`: read from a file at call time (trailing newline trimmed).
    File {
        /// File path.
        file: PathBuf,
    },
    /// A literal value (refused for sensitive parameters). A number or boolean in a
    /// definition (`days = 30`) is taken as its text: every `args_dict` value is a string.
    Literal(String),
}

/// What a parameter's definition may be, for errors: no value is ever quoted in one.
const PARAM_SHAPES: &str = "give a string, number or boolean, { env = \"VAR\" }, { file = \"PATH\" } or a table of value, sensitive, dynamic, required, allowed_values, regex, description";

/// A value written in a definition: a scalar, or a table. Scalars become their text —
/// connectors receive strings (Avi passes every `args_dict` value as one), so `days = 30` in
/// TOML means `"30"` —; an array is refused (serde would otherwise read `["a"]` positionally
/// as a table's first field).
enum Written<T> {
    Text(String),
    Table(T),
}

struct WrittenVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for WrittenVisitor<T> {
    type Value = Written<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a parameter definition: {PARAM_SHAPES}")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Written::Text(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Written::Text(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Written::Text(v.to_string()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Written::Text(v.to_string()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Written::Text(v.to_string()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Written::Text(v.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(serde::de::Error::custom(format_args!("an array is not a parameter definition: {PARAM_SHAPES}")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Written::Table).map_err(|e| {
            // serde names unknown and repeated keys without values; its other messages
            // ("invalid type: string \"…\"") quote the value, which may be a secret.
            let text = e.to_string();
            if text.starts_with("unknown field") || text.starts_with("duplicate field") {
                serde::de::Error::custom(format_args!("not a parameter definition ({text}): {PARAM_SHAPES}"))
            } else {
                serde::de::Error::custom(format_args!("not a parameter definition: {PARAM_SHAPES}"))
            }
        })
    }
}

fn written<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Written<T>, D::Error> {
    d.deserialize_any(WrittenVisitor(std::marker::PhantomData))
}

/// `{ env = "VAR" }` or `{ file = "PATH" }`, as a table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reference {
    env: Option<String>,
    file: Option<PathBuf>,
}

impl Reference {
    fn source<E: serde::de::Error>(self) -> Result<ValueSource, E> {
        match self {
            Reference { env: Some(env), file: None } => Ok(ValueSource::Env { env }),
            Reference { env: None, file: Some(file) } => Ok(ValueSource::File { file }),
            _ => Err(E::custom("a value given by reference is { env = \"VAR\" } or { file = \"PATH\" }, one of them")),
        }
    }
}

impl<'de> Deserialize<'de> for ValueSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match written::<Reference, D>(d)? {
            Written::Text(text) => Ok(ValueSource::Literal(text)),
            Written::Table(reference) => reference.source(),
        }
    }
}

/// One parameter as defined by a CA account or profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    /// The value; `None` for dynamic parameters and for secrets set with `certhost secret set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSource>,
    /// For operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Never displayed, logged, audited or stored in plaintext.
    #[serde(default)]
    pub sensitive: bool,
    /// Supplied with each request rather than fixed here.
    #[serde(default)]
    pub dynamic: bool,
    /// A request (dynamic) or the definition (static) must provide it.
    #[serde(default)]
    pub required: bool,
    /// The value must be one of these (when non-empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// The value must match this regular expression (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A parameter as written in TOML: either a bare value or a full table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParamSpec {
    /// `name = "value"` (or a number or boolean, taken as its text).
    Bare(String),
    /// `[params.name] ...`.
    Full(ParamDef),
    /// `name = { env = "VAR" }` or `name = { file = "PATH" }`: a non-sensitive reference.
    Ref(ValueSource),
}

/// A parameter table: the fields of [`ParamDef`], or those of a reference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamTable {
    #[serde(default)]
    value: Option<ValueSource>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    dynamic: bool,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    allowed_values: Vec<String>,
    #[serde(default)]
    regex: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for ParamSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = match written::<ParamTable, D>(d)? {
            Written::Text(text) => return Ok(ParamSpec::Bare(text)),
            Written::Table(table) => table,
        };
        // Destructured without `..`: a new field of ParamDef cannot be forgotten here.
        let ParamTable { value, description, sensitive, dynamic, required, allowed_values, regex, env, file } = table;
        let def = ParamDef { value, description, sensitive, dynamic, required, allowed_values, regex };
        match (env, file) {
            (None, None) => Ok(ParamSpec::Full(def)),
            (env, file) if def == ParamDef::default() => Reference { env, file }.source().map(ParamSpec::Ref),
            _ => Err(serde::de::Error::custom(format_args!(
                "not a parameter definition (env or file beside other keys; a sensitive reference is {{ sensitive = true, value = {{ env = \"VAR\" }} }}): {PARAM_SHAPES}"
            ))),
        }
    }
}

impl From<ParamSpec> for ParamDef {
    fn from(spec: ParamSpec) -> Self {
        match spec {
            ParamSpec::Bare(v) => ParamDef { value: Some(ValueSource::Literal(v)), ..ParamDef::default() },
            ParamSpec::Full(def) => def,
            ParamSpec::Ref(source) => ParamDef { value: Some(source), ..ParamDef::default() },
        }
    }
}

/// Parameter errors. None of them ever contains a sensitive value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A sensitive parameter with a literal value in a definition.
    #[error(
        "sensitive parameter {name} of {owner} must not have a literal value; use {{ env = \"VAR\" }}, {{ file = \"PATH\" }} or a stored secret (`certhost secret set`; over the API, PUT …/params/{name}/secret)"
    )]
    LiteralSecret {
        /// Parameter.
        name: String,
        /// `account X` / `profile Y`.
        owner: String,
    },
    /// A parameter the connector's own description calls sensitive, defined here as a plain
    /// one: its literal value, or each request's value, would be stored and shown like any
    /// plain setting.
    #[error(
        "parameter {name} of {owner} is sensitive (its connector declares it so): mark it `sensitive = true` and give its value with {{ env = \"VAR\" }}, {{ file = \"PATH\" }}, `certhost secret set`, or with each request if it is dynamic (`account create`/`edit`: --sensitive-param {name} then `certhost secret set`, --sensitive-env {name}=VAR or --sensitive-file {name}=PATH; a profile file: {name} = {{ sensitive = true }}; over the API: {{\"sensitive\": true}} then PUT …/params/{name}/secret)"
    )]
    DeclaredSensitive {
        /// Parameter.
        name: String,
        /// `account X` / `profile Y`.
        owner: String,
    },
    /// A sensitive parameter with a list of allowed values, which would be its values in the
    /// clear.
    #[error(
        "sensitive parameter {name} of {owner} must not list allowed_values: the list is stored and shown like any setting, so it would show the values (use a regex for its form)"
    )]
    SensitiveAllowedValues {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
    },
    /// A dynamic parameter with a value.
    #[error("dynamic parameter {name} of {owner} must not have a value: each request supplies it")]
    DynamicWithValue {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
    },
    /// The same name defined by the account and the profile.
    #[error("parameter {name} is defined by both {first} and {second}")]
    Duplicate {
        /// Parameter.
        name: String,
        /// First definer.
        first: String,
        /// Second definer.
        second: String,
    },
    /// A parameter name that is no name: `api_key=SECRET` given where a name was asked for
    /// (`account create --sensitive-param NAME`) was stored as the name, in clear, and shown
    /// by every listing. Only the part before any `=` is quoted.
    #[error(
        "parameter name {shown:?} of {owner} is not a name: names are 1-64 letters, digits, '_', '-' and '.'; a value goes after = in --param, --sensitive-env or --sensitive-file, or is set with `certhost secret set`"
    )]
    BadName {
        /// The name up to any `=`, with `=…` standing for what followed.
        shown: String,
        /// Owner.
        owner: String,
    },
    /// A bad regex in a definition.
    #[error("parameter {name} of {owner} has an invalid regex: {reason}")]
    BadRegex {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
        /// Why.
        reason: String,
    },
    /// A request sets a parameter that is not dynamic.
    #[error("parameter {name} is fixed by {owner}")]
    Fixed {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
    },
    /// A request sets a parameter nobody defines.
    #[error("unknown parameter {name}: profile {profile} defines no such dynamic parameter")]
    Unknown {
        /// Parameter.
        name: String,
        /// Profile.
        profile: String,
    },
    /// A required parameter nothing can supply.
    #[error(
        "parameter {name} of {owner} is required but nothing can give it a value: add dynamic = true for each request \
         to supply it, or give it a value"
    )]
    NeverSupplied {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
    },
    /// A required parameter without a value.
    #[error("required parameter {name} of {owner} has no value{hint}")]
    Missing {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
        /// How to provide it.
        hint: &'static str,
    },
    /// A value outside the allowed set or regex. The value is named only when not sensitive.
    #[error("parameter {name} {shown}is not allowed: {rule}")]
    NotAllowed {
        /// Parameter.
        name: String,
        /// `"value" ` or empty for sensitive values.
        shown: String,
        /// The rule broken.
        rule: String,
    },
    /// A stored secret offered for a parameter that cannot take one.
    #[error("parameter {name} of {owner} {why}")]
    NoStoredSecret {
        /// Parameter.
        name: String,
        /// `account X` / `profile Y`.
        owner: String,
        /// Why not, and what to do instead.
        why: &'static str,
    },
    /// A referenced environment variable or file is unavailable.
    #[error("parameter {name} of {owner}: {reason}")]
    Unresolvable {
        /// Parameter.
        name: String,
        /// Owner.
        owner: String,
        /// Why (names the variable or file, never a value).
        reason: String,
    },
}

/// Whether `name` is a plain name, as a parameter or a connector must have: 1 to 64 ASCII
/// letters, digits, `_`, `-` and `.` (what scripts and components use as `args_dict` keys,
/// and what labels every error, log line and metric of a connector).
pub fn is_plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl ParamDef {
    /// A parameter not marked sensitive that has a value: a literal, a reference, or each
    /// request's value when dynamic. The host shows it, records a dynamic one with its order,
    /// and leaves the variable of an `{ env }` one to child processes.
    fn is_plain_value(&self) -> bool {
        !self.sensitive && (self.dynamic || self.value.is_some())
    }

    /// Checks a definition for rules that do not depend on a request.
    pub fn check(&self, name: &str, owner: &str) -> Result<(), ParamError> {
        if !is_plain_name(name) {
            let shown = match name.split_once('=') {
                Some((before, _)) => format!("{}=…", before.chars().take(64).collect::<String>()),
                None => name.chars().take(64).collect(),
            };
            return Err(ParamError::BadName { shown, owner: owner.into() });
        }
        if self.sensitive && matches!(self.value, Some(ValueSource::Literal(_))) {
            return Err(ParamError::LiteralSecret { name: name.into(), owner: owner.into() });
        }
        if self.dynamic && self.value.is_some() {
            return Err(ParamError::DynamicWithValue { name: name.into(), owner: owner.into() });
        }
        // Shown to every role by `profile show` and the API, and quoted by a refusal
        // ("expected one of …"): the values in the clear (secrets review of stop 40).
        if self.sensitive && !self.allowed_values.is_empty() {
            return Err(ParamError::SensitiveAllowedValues { name: name.into(), owner: owner.into() });
        }
        // Nothing could ever give it a value: not a request (not dynamic), not `secret set`
        // (not sensitive), not the definition. It was accepted, and every issuance failed
        // with "has no value", or with "is fixed" when a request gave it (author review of
        // stop 38).
        if self.required && !self.dynamic && !self.sensitive && self.value.is_none() {
            return Err(ParamError::NeverSupplied { name: name.into(), owner: owner.into() });
        }
        if let Some(re) = &self.regex {
            crate::pattern::check(re).map_err(|reason| ParamError::BadRegex {
                name: name.into(),
                owner: owner.into(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Whether this parameter can take a stored secret (`certhost secret set`, `PUT
    /// …/params/{param}/secret`): only a sensitive one that is neither supplied per request nor
    /// read from a reference. Its value is then checked with [`Self::check_value`], as every
    /// request would check it.
    pub fn accepts_stored_secret(&self, name: &str, owner: &str) -> Result<(), ParamError> {
        let why = if !self.sensitive {
            "is not sensitive; set its value in the definition"
        } else if self.dynamic {
            "is dynamic: each request supplies it"
        } else if self.value.is_some() {
            "takes its value from an env or file reference"
        } else {
            return Ok(());
        };
        Err(ParamError::NoStoredSecret { name: name.into(), owner: owner.into(), why })
    }

    /// Checks a concrete value against `allowed_values` and `regex`.
    pub fn check_value(&self, name: &str, value: &str) -> Result<(), ParamError> {
        // Only for a refusal: a value (a CA certificate, say) is checked on every request. A
        // value read from a file or variable is not quoted: the reference could name any file
        // the host can read, and the refusal is stored with the order (review of stop 31).
        let quoted = !self.sensitive && !matches!(self.value, Some(ValueSource::Env { .. } | ValueSource::File { .. }));
        let shown = || match quoted {
            false => String::new(),
            // A long one in part: the refusal is stored with the order and logged.
            true if value.chars().count() > 80 => {
                let head: String = value.chars().take(64).collect();
                format!("value {head:?}… ({} bytes) ", value.len())
            }
            true => format!("value {value:?} "),
        };
        if !self.allowed_values.is_empty() && !self.allowed_values.iter().any(|v| v == value) {
            return Err(ParamError::NotAllowed {
                name: name.into(),
                shown: shown(),
                rule: if self.sensitive {
                    "not one of its allowed values".into()
                } else {
                    format!("expected one of {}", self.allowed_values.join(", "))
                },
            });
        }
        if let Some(re) = &self.regex
            && !crate::pattern::full_match(re, value)
        {
            return Err(ParamError::NotAllowed { name: name.into(), shown: shown(), rule: format!("must match {re}") });
        }
        Ok(())
    }

    /// The public view of this definition: sensitive values become `set: bool`.
    pub fn view(&self, stored_secret: bool) -> ParamView {
        let value = match (&self.value, self.sensitive) {
            (_, true) => None,
            (Some(ValueSource::Literal(v)), false) => Some(v.clone()),
            (Some(ValueSource::Env { env }), false) => Some(format!("${{{env}}}")),
            (Some(ValueSource::File { file }), false) => Some(format!("<file {}>", file.display())),
            (None, false) => None,
        };
        ParamView {
            value,
            set: self.value.is_some() || stored_secret,
            description: self.description.clone(),
            sensitive: self.sensitive,
            dynamic: self.dynamic,
            required: self.required,
            // A list stored before such lists were refused (`check`) would show the values.
            allowed_values: if self.sensitive { Vec::new() } else { self.allowed_values.clone() },
            regex: self.regex.clone(),
        }
    }
}

/// What any interface may show about a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamView {
    /// The value, only for non-sensitive parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether a value is available (definition, reference or stored secret).
    pub set: bool,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Sensitive.
    pub sensitive: bool,
    /// Dynamic.
    pub dynamic: bool,
    /// Required.
    pub required: bool,
    /// Allowed values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// Regex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Names of the environment variables the sensitive parameters of `params` are read from
/// (`{ env = "VAR" }`): a process certhost starts for other reasons (a deploy hook) must not
/// inherit them.
pub fn sensitive_sources(params: &ParamMap) -> impl Iterator<Item = &ValueSource> {
    params.values().filter(|p| p.sensitive).filter_map(|p| p.value.as_ref())
}

/// Variables holding a secret: those of the notification channels (webhook secret, SMTP
/// password), registered when certhost.toml is read, and those of every account's and
/// profile's sensitive parameters, registered when the inventory reads a definition. Child
/// processes (deploy hooks, the dns-01 hook, Python workers) get none of them, and their
/// values are redacted from hook output.
static HIDDEN_FROM_CHILDREN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Files holding a secret, registered with the variables in [`HIDDEN_FROM_CHILDREN`]: hooks
/// can read them as the same user, so their output is redacted of what they hold too (a
/// `set -x` hook that `cat`s the CA token file printed it into the audit log).
static SECRET_FILES: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Registers the variables and files `sources` read secrets from; see
/// [`hidden_from_children`] and [`secret_files`].
pub fn hide_from_children<'a>(sources: impl IntoIterator<Item = &'a ValueSource>) {
    let mut files = Vec::new();
    hide_names_from_children(sources.into_iter().filter_map(|s| match s {
        ValueSource::Env { env } => Some(env.as_str()),
        ValueSource::File { file } => {
            files.push(file);
            None
        }
        ValueSource::Literal(_) => None,
    }));
    let mut known = SECRET_FILES.lock().unwrap_or_else(|p| p.into_inner());
    for file in files {
        if !known.contains(file) {
            known.push(file.clone());
        }
    }
}

/// The files registered by [`hide_from_children`].
fn secret_files() -> Vec<std::path::PathBuf> {
    SECRET_FILES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// What the registered variables (through `env`) and files hold: the values a hook's output
/// is redacted of, since a hook can print what it inherited or read.
pub fn registered_secret_values(env: EnvLookup<'_>) -> Vec<zeroize::Zeroizing<String>> {
    let from_env = hidden_from_children().into_iter().filter_map(|name| env(&name).map(zeroize::Zeroizing::new));
    from_env.chain(secret_file_values()).filter(|v| !v.is_empty()).collect()
}

/// What the files registered by [`hide_from_children`] hold now (those that can be read).
pub fn secret_file_values() -> Vec<zeroize::Zeroizing<String>> {
    secret_files().into_iter().filter_map(|file| read_value_file(&file).ok().map(zeroize::Zeroizing::new)).collect()
}

/// Registers variable names, for [`hide_from_children`]; see [`hidden_from_children`].
fn hide_names_from_children<'a>(names: impl IntoIterator<Item = &'a str>) {
    let mut hidden = HIDDEN_FROM_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    for name in names {
        if !hidden.iter().any(|h| h == name) {
            hidden.push(name.to_owned());
        }
    }
}

/// The variables registered by [`hide_from_children`].
pub fn hidden_from_children() -> Vec<String> {
    HIDDEN_FROM_CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Reads `{ env = ... }` references; injected so the library never reads the environment itself.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// An [`EnvLookup`] shared by long-lived tasks (the server, the poller).
pub type SharedEnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Resolves a static value source. `owner` and `name` only make the error precise.
pub fn resolve(source: &ValueSource, name: &str, owner: &str, env: EnvLookup<'_>) -> Result<String, ParamError> {
    match source {
        ValueSource::Literal(v) => Ok(v.clone()),
        ValueSource::Env { env: var } => env(var).ok_or_else(|| ParamError::Unresolvable {
            name: name.into(),
            owner: owner.into(),
            reason: format!("environment variable {var} is not set"),
        }),
        ValueSource::File { file } => read_value_file(file).map_err(|e| ParamError::Unresolvable {
            name: name.into(),
            owner: owner.into(),
            reason: format!("cannot read {}: {}", file.display(), io_reason(&e)),
        }),
    }
}

/// Why a value file could not be read, in the words `ls` or `cat` would use: the error's
/// kind alone said "entity not found" (operator review of stop 39). Never the OS message
/// with its "(os error 2)", and never anything of the file's content.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "it is not UTF-8 text".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        kind => kind.to_string(),
    }
}

/// `{ file = … }` values as last read, by path, with the stamp of the file they came from.
///
/// An account's files (a CA's certificate and key, a credential) are resolved on every call;
/// under issuance load opening and reading them was 2 of 7 file-system calls per request. A
/// value is reused while the file's device, inode, size, modification and change times are
/// those it was read with — a file replaced or rewritten is read again on the next call —
/// and only once the file has been still for a second. (On NFS, attributes may be cached by
/// the client for up to its `acregmax`, 60 s by default: keep such values in local files.)
/// Values live only in memory, are wiped when dropped, and never leave through an interface.
static FILE_VALUES: std::sync::LazyLock<std::sync::Mutex<FileValues>> = std::sync::LazyLock::new(Default::default);

/// Remembered file values: the stamp each was read with, and the value.
type FileValues = HashMap<PathBuf, (FileStamp, Zeroizing<String>)>;

/// Files remembered at most; the map starts over beyond that.
const FILE_VALUES_MAX: usize = 256;

/// What identifies one version of a file's content (also a connector file's, in
/// `connector::Registry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A file parameter's value (one trailing line ending, `\n` or `\r\n`, trimmed, as
/// `certhost secret set` trims what it reads), reused while the file is unchanged.
fn read_value_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let stamp = FileStamp::of(&std::fs::metadata(path)?);
    let values = FILE_VALUES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((known, value)) = values.get(path)
        && *known == stamp
    {
        return Ok(value.to_string());
    }
    drop(values);
    // The stamp filed with the text is the opened file's own: a change after it is seen by
    // the next call, whose stamp differs.
    let mut file = std::fs::File::open(path)?;
    let stamp = FileStamp::of(&file.metadata()?);
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    // A file changed within the last second may be written again within the same clock
    // tick, same size, leaving the stamp unchanged (kernels with coarse timestamps): it is
    // not remembered until it has been still for a second (git's "racy" entries). The change
    // time counts, not the modification time, which `touch -d`, `cp -p` or `tar` set back.
    let now = crate::clock::unix_now();
    if stamp.ctime.0 < now - 1 {
        let mut values = FILE_VALUES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if values.len() >= FILE_VALUES_MAX {
            values.clear();
        }
        values.insert(path.to_owned(), (stamp, Zeroizing::new(text.clone())));
    }
    Ok(text)
}

/// Parameters keyed by name, as accounts and profiles hold them.
pub type ParamMap = BTreeMap<String, ParamDef>;

/// Whether any parameter of `params` has a value without being marked sensitive. Only those
/// can break [`check_declared_sensitive`], so a definition without one needs no connector
/// loaded to check it.
pub fn has_plain_values(params: &ParamMap) -> bool {
    params.values().any(ParamDef::is_plain_value)
}

/// Refuses, among `owner`'s `params`, a parameter whose connector declares it sensitive
/// (`declared`) but that is not marked sensitive and has a value: a literal would be stored
/// unsealed and shown to every role, and the variable of an `{ env }` reference would reach
/// deploy hooks, which echoed it into the audit log (review of stop 31).
pub fn check_declared_sensitive<'a>(
    owner: &str,
    params: &ParamMap,
    declared: impl IntoIterator<Item = &'a str>,
) -> Result<(), ParamError> {
    for name in declared {
        if params.get(name).is_some_and(ParamDef::is_plain_value) {
            return Err(ParamError::DeclaredSensitive { name: name.to_owned(), owner: owner.to_owned() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_value_is_read_again_once_the_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("value");
        let next = dir.path().join("next");
        let source = ValueSource::File { file: path.clone() };
        let read = || resolve(&source, "v", "account a", &|_| None).expect("resolve");
        std::fs::write(&path, "first\n").expect("write");
        std::fs::write(&next, "third\n").expect("write");
        // Still for over a second: from now on the values are remembered.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(read(), "first");
        assert_eq!(read(), "first", "remembered");
        // Rewritten in place, same length, at once: a new change time.
        std::fs::write(&path, "again\n").expect("rewrite");
        assert_eq!(read(), "again");
        // Replaced by an older file (another inode).
        std::fs::rename(&next, &path).expect("rename");
        assert_eq!(read(), "third");
        std::fs::remove_file(&path).expect("remove");
        assert!(resolve(&source, "v", "account a", &|_| None).is_err(), "a removed file is an error, not a memory");
    }

    /// Regression: a secret file saved with Windows line endings reached the connector as
    /// "value\r"; a script that stripped it then printed the bare value, which redaction (of
    /// "value\r") did not know.
    #[test]
    fn a_file_value_loses_one_trailing_line_ending_lf_or_crlf_as_secret_set_trims() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, value) in
            [("CrLfSecret1\r\n", "CrLfSecret1"), ("lf\n", "lf"), ("two\n\n", "two\n"), ("bare", "bare")]
        {
            let path = dir.path().join(value.trim());
            std::fs::write(&path, text).expect("write");
            let source = ValueSource::File { file: path };
            assert_eq!(resolve(&source, "v", "account a", &|_| None).expect("resolve"), value, "{text:?}");
        }
    }

    #[test]
    fn bare_and_full_specs_parse_from_toml() {
        #[derive(Deserialize)]
        struct T {
            params: BTreeMap<String, ParamSpec>,
        }
        let t: T = toml::from_str(
            r#"
            [params]
            url = "https://ca.example"
            key = { sensitive = true, value = { env = "CA_KEY" } }
            who = { dynamic = true, required = true, regex = "[a-z]+" }
            ca = { file = "ca.pem" }
            "#,
        )
        .expect("toml");
        let url: ParamDef = t.params["url"].clone().into();
        assert_eq!(url.value, Some(ValueSource::Literal("https://ca.example".into())));
        let key: ParamDef = t.params["key"].clone().into();
        assert_eq!(key.value, Some(ValueSource::Env { env: "CA_KEY".into() }));
        assert!(key.check("key", "profile p").is_ok());
        let ca: ParamDef = t.params["ca"].clone().into();
        assert_eq!(ca.value, Some(ValueSource::File { file: "ca.pem".into() }));
        assert!(!ca.sensitive);
        let who: ParamDef = t.params["who"].clone().into();
        assert!(who.check_value("who", "abc").is_ok());
        assert!(who.check_value("who", "ABC").unwrap_err().to_string().contains("must match [a-z]+"));
        // A long refused value is quoted in part (walkthrough of stop 46: 900 KB in an error).
        let long = "X".repeat(100_000);
        let err = who.check_value("who", &long).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("parameter who value \"{}\"… (100000 bytes) is not allowed: must match [a-z]+", "X".repeat(64))
        );
    }

    #[test]
    fn a_regex_that_escapes_its_anchors_is_refused() {
        // Wrapped as ^(?:…)$ this would read as `^(?:[a-z]+)` or `(.*)$` and accept anything.
        let loose = ParamDef { regex: Some("[a-z]+)|(.*".into()), ..ParamDef::default() };
        let err = loose.check("who", "profile p").unwrap_err().to_string();
        assert!(err.contains("parameter who of profile p has an invalid regex"), "{err}");
    }

    #[test]
    fn literal_secrets_and_valued_dynamics_are_refused() {
        let secret =
            ParamDef { sensitive: true, value: Some(ValueSource::Literal("hunter2".into())), ..ParamDef::default() };
        let err = secret.check("token", "account a").unwrap_err().to_string();
        assert!(err.contains("must not have a literal value") && !err.contains("hunter2"));
        let dynamic = ParamDef { dynamic: true, value: Some(ValueSource::Literal("x".into())), ..ParamDef::default() };
        assert!(matches!(dynamic.check("d", "profile p"), Err(ParamError::DynamicWithValue { .. })));
        let listed = ParamDef {
            sensitive: true,
            dynamic: true,
            allowed_values: vec!["AllowedSecret-8080".into()],
            ..ParamDef::default()
        };
        let err = listed.check("pin", "profile p").expect_err("a sensitive list");
        assert!(!err.to_string().contains("AllowedSecret"), "{err}");
        assert!(matches!(err, ParamError::SensitiveAllowedValues { .. }));
    }

    /// Author review of stop 38: required, not dynamic, not sensitive, no value — nothing can
    /// ever supply it. Sensitive, `certhost secret set` can; dynamic, each request.
    #[test]
    fn a_required_parameter_nothing_can_supply_is_refused() {
        let orphan = ParamDef { required: true, ..ParamDef::default() };
        let err = orphan.check("ticket", "profile web").unwrap_err().to_string();
        assert_eq!(
            err,
            "parameter ticket of profile web is required but nothing can give it a value: add dynamic = true for each \
             request to supply it, or give it a value"
        );
        for fine in [
            ParamDef { required: true, sensitive: true, ..ParamDef::default() },
            ParamDef { required: true, dynamic: true, ..ParamDef::default() },
            ParamDef { required: true, value: Some(ValueSource::Literal("x".into())), ..ParamDef::default() },
        ] {
            fine.check("ticket", "profile web").expect("can be supplied");
        }
    }

    #[test]
    fn sensitive_values_never_appear_in_rule_errors_or_views() {
        let def = ParamDef { sensitive: true, allowed_values: vec!["a".into()], ..ParamDef::default() };
        let err = def.check_value("pin", "s3cret-pin").unwrap_err().to_string();
        assert!(!err.contains("s3cret-pin"), "{err}");
        let env_def =
            ParamDef { sensitive: true, value: Some(ValueSource::Env { env: "X".into() }), ..ParamDef::default() };
        let view = env_def.view(false);
        assert_eq!(view.value, None);
        assert!(view.set);
    }

    /// Regression (review of stop 31): a non-sensitive `{ file }` value that broke a rule was
    /// quoted in the refusal, which is stored with the order: a profile reading `ca.key`
    /// under a `regex` put the CA key in an API answer and the database.
    #[test]
    fn a_value_read_from_a_file_or_variable_is_not_quoted_in_a_refusal() {
        for value in [ValueSource::File { file: "/ca/ca.key".into() }, ValueSource::Env { env: "CA_KEY".into() }] {
            let def = ParamDef { value: Some(value), regex: Some("z".into()), ..ParamDef::default() };
            let err = def.check_value("x", "-----BEGIN PRIVATE KEY-----").unwrap_err().to_string();
            assert!(!err.contains("PRIVATE"), "{err}");
        }
        let literal =
            ParamDef { value: Some(ValueSource::Literal("y".into())), regex: Some("z".into()), ..ParamDef::default() };
        assert!(literal.check_value("x", "y").unwrap_err().to_string().contains("value \"y\""));
    }

    /// Regression (review of stop 31): `{ env }` and `{ file }` references passed for a
    /// parameter the connector declares sensitive, so its variable reached deploy hooks.
    #[test]
    fn a_parameter_a_connector_declares_sensitive_must_be_marked_whatever_its_source() {
        let def = |toml_text: &str| -> ParamDef { toml::from_str(toml_text).expect("def") };
        let refused = [
            r#"value = "literal""#,
            r#"value = { env = "CA_KEY" }"#,
            r#"value = { file = "ca.key" }"#,
            "dynamic = true",
        ];
        for text in refused {
            let params = ParamMap::from([("ca_private_key".to_owned(), def(text))]);
            assert!(has_plain_values(&params), "{text}");
            let err = check_declared_sensitive("account lab", &params, ["ca_private_key"]).expect_err(text);
            assert!(matches!(err, ParamError::DeclaredSensitive { .. }), "{text}: {err}");
        }
        let marked = ParamMap::from([(
            "ca_private_key".to_owned(),
            def(r#"sensitive = true
value = { env = "CA_KEY" }"#),
        )]);
        check_declared_sensitive("account lab", &marked, ["ca_private_key"]).expect("marked sensitive");
        assert!(!has_plain_values(&marked));
    }
}
