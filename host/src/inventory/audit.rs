//! Invariant 6: every state change writes an audit event, in the same transaction as the
//! change itself. Events are append-only (triggers refuse UPDATE and DELETE) and never hold a
//! sensitive value: callers pass already-redacted details.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{CachedSql, Inventory, InventoryError};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Sequence number.
    pub id: i64,
    /// When (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// Who: `cli:<user>`, later API token names.
    pub actor: String,
    /// What, as `object.verb` (`certificate.import`).
    pub action: String,
    /// Kind of object (`certificate`, `key`, `order`).
    pub object_type: String,
    /// Its id, when it has one.
    pub object_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Structured detail (JSON), redacted.
    pub detail: serde_json::Value,
}

/// An event to write; `at` is taken from the transaction's clock value.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// Kind of object.
    pub object_type: &'a str,
    /// Its id.
    pub object_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: &'a str,
    /// Redacted detail.
    pub detail: serde_json::Value,
}

/// Appends one event using `conn` (a transaction, so it commits with the change it records).
pub(crate) fn record(conn: &Connection, at: i64, event: &NewAuditEvent<'_>) -> Result<i64, InventoryError> {
    insert(
        conn,
        "INSERT INTO audit_events (at, actor, action, object_type, object_id, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        at,
        event,
        None,
    )
}

/// [`record`] with an id above `floor` as well as above every event's: the restore's event,
/// which puts the ids of the inventory it replaced behind every later event, so that a reader
/// following the log by id misses none of them.
pub(crate) fn record_above(
    conn: &Connection,
    at: i64,
    event: &NewAuditEvent<'_>,
    floor: i64,
) -> Result<i64, InventoryError> {
    insert(
        conn,
        "INSERT INTO audit_events (id, at, actor, action, object_type, object_id, outcome, detail)
         VALUES (max(?8, (SELECT coalesce(max(id), 0) FROM audit_events)) + 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        at,
        event,
        Some(floor),
    )
}

/// Runs `sql` with the event's seven values, and `floor` as the eighth when given.
fn insert(
    conn: &Connection,
    sql: &str,
    at: i64,
    event: &NewAuditEvent<'_>,
    floor: Option<i64>,
) -> Result<i64, InventoryError> {
    let detail = event.detail.to_string();
    let values =
        params![at, event.actor, event.action, event.object_type, event.object_id, event.outcome, detail, floor];
    conn.execute_cached(sql, &values[..if floor.is_some() { 8 } else { 7 }])?;
    Ok(conn.last_insert_rowid())
}

/// Every object type the audit log records, so that an object id without a type is found
/// through `audit_events_object` (a type missing here would be missed by that listing: the
/// unit test below reads the types the code writes).
const OBJECT_OF_ANY_TYPE: &str =
    "object_type IN ('account', 'certificate', 'inventory', 'order', 'profile', 'token') AND object_id = ?2";

/// The object types of [`OBJECT_OF_ANY_TYPE`], to refuse a filter on another: a typo listed
/// "no audit events" (day-2 walkthrough of stop 46).
const OBJECT_TYPES: [&str; 6] = ["account", "certificate", "inventory", "order", "profile", "token"];

/// Filters for listing audit events.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this object type.
    pub object_type: Option<String>,
    /// Only this object id.
    pub object_id: Option<String>,
    /// Only actions starting with this prefix.
    pub action_prefix: Option<String>,
    /// At most this many, newest first (0 = no limit).
    pub limit: u32,
    /// Only events older than this one (ids are in order of recording): the next page of a
    /// listing starts below the last id of the one before.
    pub before_id: Option<i64>,
}

/// The listing query for `filter`: `?1` object type, `?2` object id, `?3` action pattern,
/// `?4` limit, `?5` the id to list below, newest first.
///
/// Only the filters given are written into the query: behind `?1 IS NULL OR …` SQLite cannot
/// use an index, and one object's history was a walk over every event. One object (type and
/// id) is found through `audit_events_object`; a type alone is common (a quarter of all events
/// are certificates'), so there the unary `+` keeps the planner walking newest first instead
/// of sorting every event of that type.
fn list_sql(filter: &AuditFilter) -> String {
    let object = match (&filter.object_type, &filter.object_id) {
        (Some(_), Some(_)) => Some("object_type = ?1 AND object_id = ?2"),
        (Some(_), None) => Some("+object_type = ?1"),
        // An id alone names one object of each type: each is an index lookup, and their
        // events, few, are sorted (walking the log newest first read all of it for an object
        // with fewer events than the page: 150 ms at 3 M events).
        (None, Some(_)) => Some(OBJECT_OF_ANY_TYPE),
        (None, None) => None,
    };
    let action = filter.action_prefix.as_ref().map(|_| "action LIKE ?3 ESCAPE '\\'");
    // Always there, so the statement always has five parameters (no cursor: the largest id);
    // on the primary key it costs nothing and starts a later page where the last one ended.
    let conds: Vec<&str> = object.into_iter().chain(action).chain(["id < ?5"]).collect();
    let filter_sql = format!("WHERE {}", conds.join(" AND "));
    format!(
        "SELECT id, at, actor, action, object_type, object_id, outcome, detail FROM audit_events
         {filter_sql} ORDER BY id DESC LIMIT ?4"
    )
}

impl Inventory {
    /// Records an event on its own (for actions that change nothing else, e.g. a failure).
    pub fn audit(&mut self, event: &NewAuditEvent<'_>) -> Result<i64, InventoryError> {
        let now = self.now();
        record(&self.conn, now, event)
    }

    /// Lists audit events, newest first.
    pub fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, InventoryError> {
        if let Some(t) = filter.object_type.as_deref().filter(|t| !OBJECT_TYPES.contains(t)) {
            return Err(InventoryError::InvalidFilter(format!(
                "no object type {}: the audit log records {}",
                crate::view::echoed(t),
                OBJECT_TYPES.join(", ")
            )));
        }
        let limit = if filter.limit == 0 { i64::MAX } else { i64::from(filter.limit) };
        let prefix = filter.action_prefix.as_ref().map(|p| format!("{}%", super::like_escape(p)));
        let mut stmt = self.conn.prepare_cached(&list_sql(filter))?;
        let rows = stmt.query_map(
            params![filter.object_type, filter.object_id, prefix, limit, filter.before_id.unwrap_or(i64::MAX)],
            |r| {
                let detail: String = r.get(7)?;
                Ok(AuditEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    object_type: r.get(4)?,
                    object_id: r.get(5)?,
                    outcome: r.get(6)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One object's history is read through `audit_events_object`; a listing by type alone or
    /// by nothing walks the table newest first from the cursor (a sort would read every match
    /// to return a page).
    #[test]
    fn one_objects_history_is_read_through_its_index() {
        let (_dir, inv) = super::super::scratch();
        let object = |t: Option<&str>, id: Option<&str>, prefix: Option<&str>| AuditFilter {
            object_type: t.map(str::to_owned),
            object_id: id.map(str::to_owned),
            action_prefix: prefix.map(str::to_owned),
            limit: 10,
            before_id: None,
        };
        let plan = |f: &AuditFilter| super::super::query_plan(&inv.conn, &list_sql(f));
        for prefix in [None, Some("order.")] {
            let one = plan(&object(Some("certificate"), Some("7"), prefix));
            assert!(one.contains("INDEX audit_events_object (object_type=? AND object_id=? AND rowid<?)"), "{one}");
            assert!(!one.contains("TEMP B-TREE"), "{one}");
            let walk = "SEARCH audit_events USING INTEGER PRIMARY KEY (rowid<?)";
            assert_eq!(plan(&object(Some("certificate"), None, prefix)), walk);
            assert_eq!(plan(&object(None, None, prefix)), walk);
            let any = plan(&object(None, Some("7"), prefix));
            assert!(any.contains("INDEX audit_events_object (object_type=? AND object_id=? AND rowid<?)"), "{any}");
        }
    }

    /// The types an id alone is looked up under are every type the code records: one added
    /// without joining the list would drop out of `audit --object-id`.
    #[test]
    fn every_recorded_object_type_is_listed_for_an_id_alone() {
        let src = concat!(
            include_str!("../api/certificates.rs"),
            include_str!("../deploy.rs"),
            include_str!("../lifecycle.rs"),
            include_str!("accounts.rs"),
            include_str!("backup.rs"),
            include_str!("certificates.rs"),
            include_str!("lifecycle.rs"),
            include_str!("master_key.rs"),
            include_str!("orders.rs"),
            include_str!("renewals.rs"),
            include_str!("schema.rs"),
            include_str!("tokens.rs"),
        );
        let recorded: std::collections::BTreeSet<&str> = src
            .split("object_type: \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|t| *t != "test")
            .collect();
        assert!(recorded.len() >= 5, "{recorded:?}");
        for t in recorded {
            assert!(OBJECT_OF_ANY_TYPE.contains(&format!("'{t}'")), "object type {t} is not in OBJECT_OF_ANY_TYPE");
        }
        // The filter's list is the same one, and another type is refused by name.
        assert_eq!(OBJECT_OF_ANY_TYPE.matches('\'').count(), 2 * OBJECT_TYPES.len());
        assert!(OBJECT_TYPES.iter().all(|t| OBJECT_OF_ANY_TYPE.contains(&format!("'{t}'"))));
        let (_dir, inv) = super::super::scratch();
        let filter = AuditFilter { object_type: Some("certficate".into()), ..Default::default() };
        let e = inv.audit_events(&filter).expect_err("no such type").to_string();
        assert!(e.starts_with("no object type certficate: the audit log records account, certificate"), "{e}");
    }
}
