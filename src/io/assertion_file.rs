//! Client assertions from a file the platform rotates (a Kubernetes projected service-account
//! token, Entra ID workload identity's `AZURE_FEDERATED_TOKEN_FILE`), and the presets built on
//! it. This file does the IO (a `stat` per attempt, a read when the core's
//! [`must_read`](crate::client_auth::assertion::must_read) says so); the decisions are the core's.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::client::ClientCredentials;
use crate::client_auth::ClientAuth;
use crate::client_auth::assertion::{
    AssertionFuture, AssertionProvider, AssertionSource, FileStamp, HeldAssertion,
    check_not_expired, must_read,
};
use crate::endpoint::TokenUrl;
use crate::error::Error;
use crate::error::assertion::AssertionError;
use crate::secret::ClientAssertion;

/// A client assertion in a file that its platform rotates: the kubelet rewrites a projected
/// service-account token well before it expires, and a client that read it once breaks hours
/// later with an expired assertion.
///
/// Each attempt costs one `stat` of the file; its contents are read only when the file changed
/// (another modification time or length), or when the assertion held expires within
/// [`renew_before`](Self::with_renew_before) of the attempt. The assertion's `exp` is decoded
/// (not verified: it is the client's own credential) and checked before sending, so an expired
/// or unreadable file is an [`AssertionError`] naming the file, never an `invalid_client` from
/// the server. At most [`AssertionSource::MAX_ASSERTION_LEN`] bytes are read.
///
/// The `stat` and the read are blocking: inside a Tokio runtime they run on its blocking pool,
/// never on a worker, and without one (the blocking adapter) on the caller's thread. A path
/// that is not a regular file once links are followed (a directory, a named pipe, a device)
/// is refused before it is opened ([`AssertionError::NotAFile`](crate::error::AssertionError::NotAFile)).
///
/// ```no_run
/// use client_credentials::{ClientCredentials, TokenUrl};
/// use client_credentials::auth::{AssertionFile, AssertionSource, ClientAuth};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientCredentials::with_auth(
///     TokenUrl::new("https://keycloak.example.com/realms/apps/protocol/openid-connect/token")?,
///     "my-workload",
///     ClientAuth::Source(AssertionSource::new(AssertionFile::new("/var/run/secrets/tokens/keycloak"))),
/// )?;
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub struct AssertionFile {
    state: Arc<FileState>,
    renew_before: Duration,
}

/// What an [`AssertionFile`] and the blocking reads it hands off share.
struct FileState {
    path: PathBuf,
    held: Mutex<Option<HeldAssertion>>,
    reads: AtomicU64,
}

impl AssertionFile {
    /// How close to its `exp` an assertion held is read again even though the file looks
    /// unchanged: 30 seconds, well within the kubelet's rotation at 80% of a token's lifetime
    /// (at least 10 minutes).
    pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30);

    /// The assertion in the file at `path`, read at the first attempt.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            state: Arc::new(FileState {
                path: path.into(),
                held: Mutex::new(None),
                reads: AtomicU64::new(0),
            }),
            renew_before: Self::DEFAULT_RENEW_BEFORE,
        }
    }

    /// Sets how close to its `exp` the assertion held is read again; the default is
    /// [`DEFAULT_RENEW_BEFORE`](Self::DEFAULT_RENEW_BEFORE).
    #[must_use]
    pub fn with_renew_before(mut self, renew_before: Duration) -> Self {
        self.renew_before = renew_before;
        self
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.state.path
    }

    /// How many times the file's contents have been read.
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.state.reads.load(Ordering::Relaxed)
    }

    /// The assertion for an attempt at `now`, on this thread (blocking).
    fn current(&self, now: SystemTime) -> Result<ClientAssertion, AssertionError> {
        self.state.current(now, self.renew_before)
    }
}

impl FileState {
    fn origin(&self) -> String {
        format!("in {}", self.path.display())
    }

    fn unreadable(&self, source: std::io::Error) -> AssertionError {
        AssertionError::Unreadable {
            path: self.path.clone(),
            source,
        }
    }

    /// The file's stamp, refusing anything but a regular file before it is ever opened.
    fn stamp(&self) -> Result<FileStamp, AssertionError> {
        // Follows symbolic links: the kubelet swaps a `..data` link to rotate the token.
        let metadata = std::fs::metadata(&self.path).map_err(|e| self.unreadable(e))?;
        if !metadata.is_file() {
            return Err(AssertionError::NotAFile {
                path: self.path.clone(),
            });
        }
        Ok(FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }

    fn read(&self) -> Result<String, AssertionError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let file = File::open(&self.path).map_err(|e| self.unreadable(e))?;
        // Checked again on the handle: the path may have been swapped since the stamp.
        if !file.metadata().map_err(|e| self.unreadable(e))?.is_file() {
            return Err(AssertionError::NotAFile {
                path: self.path.clone(),
            });
        }
        let mut contents = String::new();
        file.take(AssertionSource::MAX_ASSERTION_LEN as u64 + 1)
            .read_to_string(&mut contents)
            .map_err(|e| self.unreadable(e))?;
        if contents.len() > AssertionSource::MAX_ASSERTION_LEN {
            return Err(AssertionError::TooLarge {
                path: self.path.clone(),
                limit: AssertionSource::MAX_ASSERTION_LEN,
            });
        }
        Ok(contents)
    }

    /// The assertion for an attempt at `now`, reading the file only when the core says so.
    /// Blocking: it stats the file, and may read it.
    fn current(
        &self,
        now: SystemTime,
        renew_before: Duration,
    ) -> Result<ClientAssertion, AssertionError> {
        let stamp = self.stamp()?;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if must_read(held.as_ref(), stamp, now, renew_before) {
            let contents = self.read()?;
            *held = Some(HeldAssertion::parse(&contents, stamp, || self.origin())?);
        }
        let held = held.as_ref().expect("an assertion was just read");
        check_not_expired(held.exp, now, || self.origin())?;
        Ok(held.assertion.clone())
    }
}

impl std::fmt::Debug for AssertionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionFile")
            .field("path", &self.state.path)
            .field("renew_before", &self.renew_before)
            .field("reads", &self.reads())
            .finish_non_exhaustive()
    }
}

impl AssertionProvider for AssertionFile {
    /// Inside a Tokio runtime the `stat` and the read run on its blocking pool, so a hung mount
    /// holds no worker, and the caller's bound (the source's fetch timeout) ends the wait: the
    /// future resolves with the source's timeout while the read finishes or hangs on its own
    /// thread. Without a runtime (the blocking adapter, which blocks its caller anyway) they run
    /// on the caller's thread.
    fn assertion(&self, now: SystemTime) -> AssertionFuture<'_> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Box::pin(std::future::ready(self.current(now)));
        };
        let (state, renew_before) = (Arc::clone(&self.state), self.renew_before);
        let read = runtime.spawn_blocking(move || state.current(now, renew_before));
        Box::pin(async move {
            read.await.unwrap_or_else(|joined| {
                Err(AssertionError::Unreadable {
                    path: self.state.path.clone(),
                    source: std::io::Error::other(joined),
                })
            })
        })
    }
}

/// The scope that asks Entra ID for a token to `resource` with the permissions granted to the
/// application: `{resource}/.default` (a resource with a trailing `/` keeps it, as Entra wants).
#[must_use]
#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
pub fn entra_scope(resource: &str) -> String {
    format!("{resource}/.default")
}

fn variable(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, AssertionError> {
    env(name)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or(AssertionError::MissingVariable { name })
}

#[cfg_attr(docsrs, doc(cfg(feature = "token-source")))]
impl ClientCredentials {
    /// Entra ID's authority when `AZURE_AUTHORITY_HOST` is not set.
    pub const ENTRA_DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";

    /// Where Kubernetes mounts a pod's service-account token by default.
    pub const KUBERNETES_SERVICE_ACCOUNT_TOKEN: &str =
        "/var/run/secrets/kubernetes.io/serviceaccount/token";

    /// A client of Entra ID's v2.0 token endpoint by workload identity, from the variables its
    /// webhook sets in the pod: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE` (the projected service-account token, re-read as it
    /// rotates, by [`AssertionFile`]) and `AZURE_AUTHORITY_HOST` (default
    /// [`ClientCredentials::ENTRA_DEFAULT_AUTHORITY`]). Ask for a scope with [`entra_scope`]. The process
    /// environment is read once, here; see
    /// [`entra_workload_identity_from`](Self::entra_workload_identity_from) for another.
    ///
    /// # Errors
    ///
    /// [`Error::ClientAssertion`] with [`AssertionError::MissingVariable`] naming a missing or
    /// empty variable; [`Error::InvalidTokenUrl`] if the authority and tenant make no URL.
    pub fn entra_workload_identity() -> Result<Self, Error> {
        Self::entra_workload_identity_from(|name| std::env::var(name).ok())
    }

    /// As [`entra_workload_identity`](Self::entra_workload_identity), with the variables from
    /// `env` (a variable's name in, its value out).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use client_credentials::ClientCredentials;
    /// use client_credentials::auth::entra_scope;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let env = HashMap::from([
    ///     ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
    ///     ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
    ///     ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"),
    /// ]);
    /// let client = ClientCredentials::entra_workload_identity_from(|name| {
    ///     env.get(name).map(|value| value.to_string())
    /// })?;
    /// assert_eq!(
    ///     client.token_url().as_uri(),
    ///     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    /// );
    /// let request = client.token_request().scope(entra_scope("https://graph.microsoft.com")).build()?;
    /// assert_eq!(request.scope(), Some("https://graph.microsoft.com/.default"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`entra_workload_identity`](Self::entra_workload_identity).
    pub fn entra_workload_identity_from(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let client_id = variable(&env, "AZURE_CLIENT_ID")?;
        let tenant = variable(&env, "AZURE_TENANT_ID")?;
        let file = variable(&env, "AZURE_FEDERATED_TOKEN_FILE")?;
        let mut authority = variable(&env, "AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|_| ClientCredentials::ENTRA_DEFAULT_AUTHORITY.to_owned());
        if !authority.ends_with('/') {
            authority.push('/');
        }
        let token_url = TokenUrl::new(&format!("{authority}{tenant}/oauth2/v2.0/token"))?;
        Self::with_auth(
            token_url,
            client_id,
            ClientAuth::Source(AssertionSource::new(AssertionFile::new(file))),
        )
    }

    /// A client whose assertion is a Kubernetes service-account token, for a server that
    /// federates the cluster's issuer (Keycloak 26.4's Kubernetes identity provider, a
    /// SPIFFE-style federation): the token in `token_file` (a projected token whose audience
    /// is the server; [`ClientCredentials::KUBERNETES_SERVICE_ACCOUNT_TOKEN`] for the default mount), re-read as
    /// the kubelet rotates it, by [`AssertionFile`].
    ///
    /// # Errors
    ///
    /// As [`ClientCredentials::with_auth`].
    pub fn kubernetes_service_account(
        token_url: TokenUrl,
        client_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> Result<Self, Error> {
        Self::with_auth(
            token_url,
            client_id,
            ClientAuth::Source(AssertionSource::new(AssertionFile::new(token_file))),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

    use std::future::Future as _;

    use super::*;
    use crate::client_auth::method::AuthMethod;
    use crate::test_support::at;

    fn jwt(exp: u64, marker: &str) -> String {
        let claims = format!(r#"{{"sub":"{marker}","exp":{exp}}}"#);
        format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", BASE64URL.encode(claims))
    }

    /// A directory of its own for one test, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("client-credentials-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Writes `contents` as the platform does: to a new file renamed over the old one.
        fn rotate(&self, contents: &str) -> PathBuf {
            let path = self.0.join("token");
            let staged = self.0.join("token.new");
            std::fs::write(&staged, contents).unwrap();
            std::fs::rename(&staged, &path).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_file_is_read_only_when_it_changed_or_its_assertion_nears_exp() {
        let dir = Dir::new("rotation");
        let first = jwt(1_000, "first");
        let path = dir.rotate(&format!("{first}\n"));
        let file = AssertionFile::new(&path);
        for now in [0, 10, 500, 969] {
            assert_eq!(file.current(at(now)).unwrap().secret(), first);
        }
        assert_eq!(file.reads(), 1, "an unchanged file is read once");

        // Near exp, a file that looks unchanged is read again, and still refused once expired.
        assert_eq!(file.current(at(975)).unwrap().secret(), first);
        assert_eq!(file.reads(), 2);
        let error = file.current(at(1_000)).unwrap_err();
        assert!(
            matches!(error, AssertionError::Expired { exp: 1_000, .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains(&first));

        // The platform rotates the file (a longer one: another length, whatever the mtime).
        let second = jwt(100_000, "second-token");
        dir.rotate(&second);
        for now in [1_001, 2_000, 50_000] {
            assert_eq!(file.current(at(now)).unwrap().secret(), second);
        }
        assert_eq!(file.reads(), 4, "read once more for the rotation");
    }

    #[test]
    fn only_a_regular_file_is_opened_and_a_link_to_one_is_followed() {
        let dir = Dir::new("kinds");
        let error = AssertionFile::new(&dir.0).current(at(0)).unwrap_err();
        assert!(
            matches!(error, AssertionError::NotAFile { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("not a regular file"), "{error}");

        // A named pipe: opening it would wait for a writer; it is refused at once.
        let pipe = dir.0.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        let error = AssertionFile::new(&pipe).current(at(0)).unwrap_err();
        assert!(
            matches!(error, AssertionError::NotAFile { .. }),
            "{error:?}"
        );

        // The kubelet's layout: `token` links to `..data/token`, itself behind a link.
        let data = dir.0.join("..2026_12_07");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("token"), jwt(1_000, "linked")).unwrap();
        std::os::unix::fs::symlink(&data, dir.0.join("..data")).unwrap();
        let token = dir.0.join("linked-token");
        std::os::unix::fs::symlink(dir.0.join("..data/token"), &token).unwrap();
        assert_eq!(
            AssertionFile::new(&token).current(at(0)).unwrap().secret(),
            jwt(1_000, "linked")
        );
    }

    #[test]
    fn a_missing_empty_or_foreign_file_is_an_error_naming_it() {
        let dir = Dir::new("errors");
        let file = AssertionFile::new(dir.0.join("absent"));
        let error = file.current(at(0)).unwrap_err();
        assert!(
            matches!(error, AssertionError::Unreadable { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("absent"));
        let not_retryable = Error::from(error);
        assert!(!not_retryable.is_retryable());

        let path = dir.rotate("");
        let error = AssertionFile::new(&path).current(at(0)).unwrap_err();
        assert!(error.to_string().contains("the file is empty"), "{error}");

        let path = dir.rotate("hunter2");
        let error = AssertionFile::new(&path).current(at(0)).unwrap_err();
        assert!(matches!(error, AssertionError::Malformed { .. }));
        assert!(!error.to_string().contains("hunter2"));

        let path = dir.rotate(&"a".repeat(AssertionSource::MAX_ASSERTION_LEN + 1));
        let error = AssertionFile::new(&path).current(at(0)).unwrap_err();
        assert!(
            matches!(error, AssertionError::TooLarge { .. }),
            "{error:?}"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const ENTRA: [(&str, &str); 3] = [
        ("AZURE_CLIENT_ID", "app-1"),
        ("AZURE_TENANT_ID", "tenant-1"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/run/azure/token"),
    ];

    #[test]
    fn entra_preset_from_its_variables() {
        let client = ClientCredentials::entra_workload_identity_from(env(&ENTRA)).unwrap();
        assert_eq!(client.client_id(), "app-1");
        assert_eq!(
            client.token_url().as_uri(),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(client.auth_method(), AuthMethod::PrivateKeyJwt);
        let mut sovereign = ENTRA.to_vec();
        sovereign.push(("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"));
        let client = ClientCredentials::entra_workload_identity_from(env(&sovereign)).unwrap();
        assert_eq!(
            client.token_url().as_uri(),
            "https://login.microsoftonline.us/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            entra_scope("https://graph.microsoft.com"),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            entra_scope("https://management.core.windows.net/"),
            "https://management.core.windows.net//.default"
        );
    }

    #[test]
    fn a_missing_or_empty_variable_is_named() {
        for name in [
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            for value in [None, Some(" ")] {
                let pairs: Vec<(&str, &str)> = ENTRA
                    .iter()
                    .copied()
                    .filter(|(k, _)| *k != name)
                    .chain(value.map(|v| (name, v)))
                    .collect();
                let error =
                    ClientCredentials::entra_workload_identity_from(env(&pairs)).unwrap_err();
                assert!(
                    matches!(&error, Error::ClientAssertion(AssertionError::MissingVariable { name: n }) if *n == name),
                    "{error:?}"
                );
                let source = std::error::Error::source(&error).unwrap().to_string();
                assert!(source.contains(name), "{source}");
            }
        }
    }

    #[test]
    fn kubernetes_preset_reads_the_given_file() {
        let dir = Dir::new("kubernetes");
        let path = dir.rotate(&jwt(10_000, "k8s"));
        let client = ClientCredentials::kubernetes_service_account(
            TokenUrl::new("https://keycloak.example.com/token").unwrap(),
            "workload",
            &path,
        )
        .unwrap();
        let request = client.token_request().build().unwrap();
        let source = request.assertion_source().expect("a client with a source");
        let mut pending = std::pin::pin!(source.assertion(at(5)));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(assertion) = pending.as_mut().poll(&mut context) else {
            panic!("a file source is ready at once")
        };
        let assertion = assertion.unwrap();
        assert_eq!(assertion.secret(), jwt(10_000, "k8s"));
    }
}
