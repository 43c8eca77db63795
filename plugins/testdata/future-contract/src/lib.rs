//! Test data: exports `certhost:connector/connector@9.0.0`, which this host must refuse.

wit_bindgen::generate!({ path: "wit", world: "ca-connector" });

use certhost::connector::types::*;
use exports::certhost::connector::connector::Guest;

struct Future;

fn no() -> ConnectorError {
    ConnectorError::Unsupported("future".into())
}

impl Guest for Future {
    fn describe() -> Description {
        Description { name: "future".into(), version: "9.0.0".into(), parameters: vec![], operations: vec![] }
    }
    fn certificate_request(_: IssueRequest, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
    fn poll(_: String, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
    fn renew(_: RenewRequest, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
    fn revoke(_: RevokeRequest, _: Vec<Param>) -> Result<(), ConnectorError> {
        Err(no())
    }
    fn test_connection(_: Vec<Param>) -> Result<(), ConnectorError> {
        Err(no())
    }
    fn list_certificates(_: Vec<Param>, _: Option<String>) -> Result<CertificatePage, ConnectorError> {
        Err(no())
    }
    fn update_order(_: String, _: OrderAction, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
}

export!(Future);
