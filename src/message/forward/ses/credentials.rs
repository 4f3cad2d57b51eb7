//! AWS credentials for signing: the standard chain (environment, profile, web
//! identity, ECS and EC2 roles), asked once and then again shortly before the
//! credentials expire, not once per message.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::identity::Identity;

/// Temporary credentials are renewed this long before they expire (the SDK's margin too).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Longest the chain may take (an instance metadata call, an STS exchange).
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed renewal, credentials still valid are used this long before asking again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The chain has nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("no usable AWS credentials: {0}")]
pub struct CredentialsError(String);

/// Caches what the chain gives, renewing it before it expires.
pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Cached>>,
    /// One renewal at a time; the others wait for its result.
    renewing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    identity: Identity,
    /// When to ask the chain again; `None`: never (long-term keys).
    renew_at: Option<SystemTime>,
    /// When the credentials stop working.
    expires_at: Option<SystemTime>,
}

impl CredentialCache {
    /// A cache over `provider`; nothing is asked until the first call.
    pub fn new(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache {
            provider,
            current: RwLock::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// Credentials to sign with now.
    pub async fn identity(&self) -> Result<Identity, CredentialsError> {
        if let Some(identity) = self.fresh() {
            return Ok(identity);
        }
        let _renewing = self.renewing.lock().await;
        // Another caller may have renewed them while this one waited.
        if let Some(identity) = self.fresh() {
            return Ok(identity);
        }
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials()).await;
        let reason = match loaded {
            Ok(Ok(credentials)) => {
                let expires_at = credentials.expiry();
                let cached = Cached {
                    identity: credentials.into(),
                    renew_at: expires_at.map(|at| at.checked_sub(REFRESH_MARGIN).unwrap_or(at)),
                    expires_at,
                };
                let identity = cached.identity.clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(cached);
                return Ok(identity);
            }
            Ok(Err(err)) => super::error_chain(&err),
            Err(_) => format!("the AWS credential chain took over {LOAD_TIMEOUT:?}"),
        };
        // Credentials that still work are better than none while the chain recovers.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        match current.as_mut() {
            Some(cached) if cached.expires_at.is_none_or(|at| now < at) => {
                tracing::warn!(error = %reason, "AWS credentials not renewed; using the current ones");
                cached.renew_at = Some(now + RETRY_AFTER_FAILURE);
                Ok(cached.identity.clone())
            }
            _ => Err(CredentialsError(reason)),
        }
    }

    /// Forgets the current credentials' freshness: SES refused them (expired
    /// or revoked early), so the next call asks the chain again.
    pub fn renew_soon(&self) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = current.as_mut() {
            cached.renew_at = Some(SystemTime::now());
        }
    }

    fn fresh(&self) -> Option<Identity> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let cached = current.as_ref()?;
        cached
            .renew_at
            .is_none_or(|at| SystemTime::now() < at)
            .then(|| cached.identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::{self, future};

    use super::*;

    /// A chain that counts its calls and hands out credentials expiring `valid_for` from now.
    #[derive(Debug, Clone)]
    struct Counting {
        calls: Arc<AtomicU32>,
        valid_for: Option<Duration>,
        fail_after: u32,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_after {
                return future::ProvideCredentials::ready(Err(
                    provider::error::CredentialsError::not_loaded("metadata service down"),
                ));
            }
            let expiry = self.valid_for.map(|d| SystemTime::now() + d);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                expiry,
                "test",
            )))
        }
    }

    fn chain(valid_for: Option<Duration>, fail_after: u32) -> (CredentialCache, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let provider = Counting {
            calls: calls.clone(),
            valid_for,
            fail_after,
        };
        (
            CredentialCache::new(SharedCredentialsProvider::new(provider)),
            calls,
        )
    }

    fn key(identity: &Identity) -> String {
        identity
            .data::<Credentials>()
            .map(|c| c.access_key_id().to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn long_term_keys_are_asked_for_once() {
        let (cache, calls) = chain(None, u32::MAX);
        for _ in 0..5 {
            assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_credentials_are_renewed_on_the_next_call() {
        let (cache, calls) = chain(None, u32::MAX);
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        cache.renew_soon();
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID1");
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_renewed() {
        // Valid for less than the margin: every call renews.
        let (cache, calls) = chain(Some(Duration::from_secs(60)), u32::MAX);
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_valid_credentials_and_then_fails() {
        let (cache, calls) = chain(Some(Duration::from_secs(60)), 1);
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        // Renewal fails: the current ones still work for 60 s, and the chain rests 10 s.
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        assert_eq!(key(&cache.identity().await.unwrap()), "AKID0");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let (empty, _) = chain(None, 0);
        let err = empty.identity().await.unwrap_err();
        assert!(err.to_string().contains("metadata service down"), "{err}");
    }
}
