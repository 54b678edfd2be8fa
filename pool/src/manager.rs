//! What a pool pools: how objects are made, checked, cleaned and closed.

use std::future::Future;

/// Makes, checks, cleans and closes the objects of a [`Pool`](crate::Pool).
///
/// Every path that ends an object's use is explicit and async: the pool never
/// leaves cleanup to `Drop`.
pub trait Manager: Send + Sync + 'static {
    /// The pooled object.
    type Object: Send + 'static;
    /// Why making or cleaning an object failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes a new object (connects, logs in, runs the on-connect hook).
    fn create(&self) -> impl Future<Output = Result<Self::Object, Self::Error>> + Send;

    /// A check that does not wait, before an idle object is handed out: is it
    /// still fit (not closed by its peer, nothing unread)? `false` closes it.
    fn is_valid(&self, object: &mut Self::Object) -> bool {
        let _ = object;
        true
    }

    /// A check (and, when needed, a recycle) before an idle object is handed
    /// out, within the pool's recycle timeout. An error closes the object.
    /// The default is [`recycle`](Self::recycle).
    fn check(
        &self,
        object: &mut Self::Object,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.recycle(object)
    }

    /// Brings a released object back to a clean state, or says it cannot
    /// (then it is closed).
    fn recycle(
        &self,
        object: &mut Self::Object,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Ends an abandoned lease explicitly (for Postgres: drain and ROLLBACK).
    /// The default is [`recycle`](Self::recycle).
    fn reclaim(
        &self,
        object: &mut Self::Object,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.recycle(object)
    }

    /// Closes an object explicitly (says goodbye, closes the socket).
    fn close(&self, object: Self::Object) -> impl Future<Output = ()> + Send;
}
