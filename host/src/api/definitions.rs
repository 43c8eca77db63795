//! The shapes of a CA account's definition as the API's description shows them. The bodies
//! are read as [`AccountDef`](crate::account::AccountDef), whose TOML-first parsing (a
//! parameter as a bare value, a reference or a table) no derive can describe; these types only
//! describe it, so a client can learn the body from `/v1/openapi.json` (walkthrough of stop
//! 46: the account body was an untyped object there). Kept in step by a test that reads each
//! example below with the real parser.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

/// A CA account: the fields of `[accounts.NAME]` in certhost.toml.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "connector": "/opt/certhost/connectors/my-ca.wasm",
    "params": {
        "url": "https://ca.example.com",
        "api_token": {"sensitive": true, "required": true},
        "ca_bundle": {"file": "/etc/certhost/ca.pem"},
        "ticket": {"dynamic": true, "regex": "[A-Z]+-[0-9]+"}
    },
    "allowed_hosts": ["https://ca.example.com"],
    "timeout_seconds": 30
}))]
pub struct AccountDefinition {
    /// The connector: an absolute path to a `.wasm` component or a `.py` script.
    connector: String,
    /// For operators.
    #[serde(default)]
    #[schema(nullable = false)]
    description: Option<String>,
    /// `inactive`: skipped by issuance and failover.
    #[serde(default)]
    #[schema(nullable = false)]
    status: Option<AccountStatusName>,
    /// Parameters by name, handed to the connector (`args_dict` for a script). A sensitive one
    /// takes its value from `{"env": …}`, `{"file": …}`, each request (dynamic) or
    /// `PUT /v1/accounts/{name}/params/{param}/secret`, never a literal.
    #[serde(default)]
    #[schema(nullable = false)]
    params: Option<BTreeMap<String, ParamDefinition>>,
    /// Hosts a component may send HTTP to: `host`, `host:port`, `https://host`, `*.domain`.
    #[serde(default)]
    #[schema(nullable = false)]
    allowed_hosts: Option<Vec<String>>,
    /// Absolute paths of PEM files of CAs a component's HTTPS trusts besides the system's.
    #[serde(default)]
    #[schema(nullable = false)]
    extra_ca_pems: Option<Vec<String>>,
    /// One call's deadline (default 30).
    #[serde(default)]
    #[schema(minimum = 1, nullable = false)]
    timeout_seconds: Option<u64>,
    /// The connector's memory cap (default 64 for a component, 512 for a script).
    #[serde(default)]
    #[schema(minimum = 1, nullable = false)]
    memory_mib: Option<u64>,
    /// The largest response body a component may read (default 4).
    #[serde(default)]
    #[schema(minimum = 1, nullable = false)]
    http_body_mib: Option<u64>,
}

/// A new CA account: its name and its definition.
#[derive(Deserialize, ToSchema)]
pub struct NewAccountDefinition {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    name: String,
    #[serde(flatten)]
    definition: AccountDefinition,
}

/// Whether an account may be called.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum AccountStatusName {
    Active,
    Inactive,
}

/// A parameter: a value (a number or boolean is taken as its text), a reference read at call
/// time, or a table.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum ParamDefinition {
    /// A literal value (not for a sensitive parameter).
    Text(String),
    /// A number, taken as its text.
    Number(f64),
    /// A boolean, taken as its text.
    Flag(bool),
    /// Read from the host's environment at call time.
    Env(EnvReference),
    /// Read from a file at call time (its trailing newline dropped).
    File(FileReference),
    /// The whole definition.
    Table(ParamTable),
}

/// `{"env": "VAR"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnvReference {
    env: String,
}

/// `{"file": "/absolute/path"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FileReference {
    file: String,
}

/// A parameter's whole definition.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ParamTable {
    /// The value: a literal, `{"env": …}` or `{"file": …}`; none for a dynamic parameter or a
    /// stored secret.
    #[serde(default)]
    #[schema(nullable = false)]
    value: Option<ParamValue>,
    /// For operators.
    #[serde(default)]
    #[schema(nullable = false)]
    description: Option<String>,
    /// Never shown, logged, audited or stored in the clear.
    #[serde(default)]
    #[schema(nullable = false)]
    sensitive: Option<bool>,
    /// Supplied with each request.
    #[serde(default)]
    #[schema(nullable = false)]
    dynamic: Option<bool>,
    /// A request (dynamic) or the definition (static) must give it.
    #[serde(default)]
    #[schema(nullable = false)]
    required: Option<bool>,
    /// The value must be one of these (not for a sensitive parameter).
    #[serde(default)]
    #[schema(nullable = false)]
    allowed_values: Option<Vec<String>>,
    /// The value must match this regular expression (anchored).
    #[serde(default)]
    #[schema(nullable = false)]
    regex: Option<String>,
}

/// A parameter table's value.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum ParamValue {
    Text(String),
    Env(EnvReference),
    File(FileReference),
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    /// The example the description shows is a definition the real parser reads, and each of
    /// its fields is one the description names.
    #[test]
    fn the_described_example_is_a_definition_the_host_reads() {
        let schema = serde_json::to_value(super::AccountDefinition::schema()).expect("schema");
        let example = schema["example"].clone();
        let def: crate::account::AccountDef = serde_json::from_value(example.clone()).expect("the example parses");
        assert_eq!(def.params.len(), 4);
        assert!(def.params["api_token"].sensitive && def.params["ticket"].dynamic);
        for field in example.as_object().expect("object").keys() {
            assert!(schema["properties"].get(field).is_some(), "{field} is described");
        }
        let nullable = schema.to_string().contains("\"null\"");
        assert!(!nullable, "no field is described as taking null, which the parser refuses");
        // And every field the parser takes is described (a table of the real type's fields).
        let all = serde_json::json!({
            "connector": "/x.wasm", "description": "d", "status": "inactive", "params": {},
            "allowed_hosts": [], "extra_ca_pems": [], "timeout_seconds": 5, "memory_mib": 5, "http_body_mib": 1
        });
        let parsed: crate::account::AccountDef = serde_json::from_value(all.clone()).expect("parses");
        let back = serde_json::to_value(&parsed).expect("json");
        for field in all.as_object().expect("object").keys().chain(back.as_object().expect("object").keys()) {
            assert!(schema["properties"].get(field).is_some(), "{field} is described");
        }
        // A reference is not a table: only its one field (the parser refuses others too).
        let table = serde_json::to_value(super::FileReference::schema()).expect("schema");
        assert_eq!(table["additionalProperties"], false, "{table}");
    }
}
