//! `ControllerError`: what a reconcile can fail with. Conflicts and API
//! errors requeue with back-off; nothing here panics.

/// Errors of the controller manager and its reconcilers.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The API answered with an error (including 409 Conflict on a stale write).
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// An object could not be (de)serialised.
    #[error("serialization failed: {0}")]
    Serde(#[from] serde_json::Error),
    /// A controller may not adopt for an owner that a live read shows is
    /// being deleted or was replaced (a new object under the same name).
    #[error("cannot adopt for {0}: it is being deleted or was replaced")]
    CannotAdopt(String),
    /// An object in the cache is not valid for this controller.
    #[error("invalid object: {0}")]
    Invalid(String),
}

impl ControllerError {
    /// True for a 409 Conflict (stale resourceVersion or already exists).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api(kube::Error::Api(s)) if s.code == 409)
    }

    /// True for a 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api(kube::Error::Api(s)) if s.code == 404)
    }
}

/// Treats 404 Not Found as success (the object is already gone).
pub fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, ControllerError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Treats 409 AlreadyExists/Conflict as success.
pub fn ignore_conflict<T>(r: Result<T, kube::Error>) -> Result<Option<T>, ControllerError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}
