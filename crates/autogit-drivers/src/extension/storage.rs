//! A `storage` extension: a [`Storage`] whose calls are `storage.put`, `storage.get`,
//! `storage.list` and `storage.delete` (docs/extensions.md). Archives never travel through
//! the protocol: autogit passes the path of a local file the extension reads (`put`) or
//! writes (`get`). Verification and retention are autogit's (`crate::storage`), so an
//! extension that loses or corrupts a copy is caught the same way a built-in would be.

use super::host::{Grant, Limits, Session};
use super::{ExtensionError, Found};
use crate::storage::{RemoteObject, Storage, StorageError, check_name};
use autogit_core::extension::{ProviderType, code};
use serde_json::{Value, json};
use std::path::Path;

/// A started `storage` extension.
#[derive(Debug)]
pub struct ExtensionStorage(Session);

impl ExtensionStorage {
    /// Starts `found` as a `storage` provider (only what it declared reaches it).
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        Session::start(found, ProviderType::Storage, grant, limits)
            .await
            .map(Self)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, StorageError> {
        self.0.call(method, params).await.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: ExtensionError) -> StorageError {
        match e {
            ExtensionError::Remote {
                code: code::NOT_FOUND,
                message,
                ..
            } => StorageError::NotFound {
                target: self.0.name().to_owned(),
                name: message,
            },
            ExtensionError::Remote {
                code: code::AUTH,
                message,
                ..
            } => StorageError::Auth {
                target: self.0.name().to_owned(),
                detail: message,
                hint: format!(
                    "the settings `autogit extension info {}` lists",
                    self.0.name()
                ),
            },
            e => StorageError::Remote {
                target: self.0.name().to_owned(),
                detail: e.to_string(),
            },
        }
    }

    /// Sends `shutdown` and waits for it to exit.
    pub async fn shutdown(&self) {
        self.0.shutdown().await;
    }
}

fn abs(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

#[async_trait::async_trait]
impl Storage for ExtensionStorage {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn describe(&self) -> String {
        format!("extension {}", self.0.name())
    }

    async fn put(&self, file: &Path, name: &str) -> Result<(), StorageError> {
        check_name(self.0.name(), name)?;
        self.call("storage.put", json!({"name": name, "path": abs(file)}))
            .await
            .map(drop)
    }

    async fn get(&self, name: &str, file: &Path) -> Result<(), StorageError> {
        check_name(self.0.name(), name)?;
        self.call("storage.get", json!({"name": name, "path": abs(file)}))
            .await
            .map_err(|e| match e {
                StorageError::NotFound { target, .. } => StorageError::NotFound {
                    target,
                    name: name.to_owned(),
                },
                e => e,
            })
            .map(drop)
    }

    async fn list(&self) -> Result<Vec<RemoteObject>, StorageError> {
        let v = self.call("storage.list", json!({})).await?;
        let objects =
            v.get("objects")
                .and_then(Value::as_array)
                .ok_or_else(|| StorageError::Remote {
                    target: self.0.name().to_owned(),
                    detail: "`storage.list` answered without `objects`".into(),
                })?;
        Ok(objects
            .iter()
            .filter_map(|o| {
                Some(RemoteObject {
                    name: o.get("name")?.as_str()?.to_owned(),
                    size: o.get("size").and_then(Value::as_u64).unwrap_or(0),
                })
            })
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(self.0.name(), name)?;
        match self.call("storage.delete", json!({"name": name})).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}
