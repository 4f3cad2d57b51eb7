//! Shared harness for the integration tests: the relay in-process on
//! 127.0.0.1:0, an in-process SES v2 fake, a test CA, and DKIM verification
//! with mail-auth against the key's TXT record.

#![allow(dead_code)]

pub mod admin;
pub mod child;
pub mod client;
pub mod cutover;
pub mod dnsmasq;
pub mod fleet;
pub mod guard;
pub mod metrics;
pub mod peers;
pub mod relay_process;
pub mod ses_fake;
pub mod smtp_sink;
pub mod wait;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use ses_relay::config::{Config, DkimKeyConfig, HumanDuration, SesMode, TlsConfig};
use ses_relay::daemon::server::{Server, ServerOptions};
use ses_relay::daemon::shutdown::Shutdown;

/// The demo key shipped with the repository, and its TXT record.
pub fn demo_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/dev/dkim-demo.pem")
}

pub fn demo_txt() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/dev/dkim-demo.txt"))
        .unwrap()
        .trim()
        .to_string()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ses-relay-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An address on 127.0.0.1 that refuses connections for as long as this
/// lives: a socket bound there but not listening, so Linux answers a SYN
/// with a reset, and nothing else can take the port meanwhile (unlike a
/// port bound, released and hoped to stay closed).
pub struct RefusingPort {
    pub addr: SocketAddr,
    _bound: tokio::net::TcpSocket,
}

impl RefusingPort {
    pub fn bind() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        RefusingPort {
            addr: socket.local_addr().unwrap(),
            _bound: socket,
        }
    }
}

/// A config for tests: loopback, port 0, the demo key, SES API at `endpoint`.
pub fn test_config(endpoint: &str) -> Config {
    let mut config = Config::default();
    config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.smtp.hostname = "relay.test".into();
    config.smtp.max_message_size = ses_relay::config::ByteSize(1 << 20);
    config.smtp.idle_timeout = HumanDuration(Duration::from_secs(30));
    config.smtp.shutdown_grace = HumanDuration(Duration::from_secs(5));
    config.dkim.keys = vec![DkimKeyConfig {
        domain: "goo.ne.jp".into(),
        selector: "gooid-21-prod".into(),
        private_key: demo_key(),
        created: None,
    }];
    config.ses.mode = SesMode::Api;
    config.ses.endpoint_url = endpoint.to_string();
    config.ses.configuration_set = "ses-migration-production-config-set".into();
    config.ses.timeout = HumanDuration(Duration::from_secs(5));
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    config.cutover.state_file = PathBuf::new();
    config
}

/// A relay running in this process.
pub struct RunningRelay {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The relay's control handles (cutover, router, guard, reloadable config).
    pub control: std::sync::Arc<ses_relay::control::admin::AdminState>,
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<bool>,
}

impl RunningRelay {
    pub async fn start(config: Config) -> RunningRelay {
        config.validate().expect("test config is valid");
        // DNS answers the demo key's record, so the periodic DKIM check runs without the internet.
        let mut answers = HashMap::new();
        answers.insert(
            "gooid-21-prod._domainkey.goo.ne.jp".to_string(),
            vec![demo_txt()],
        );
        let options = ServerOptions {
            ses_credentials: Some(SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "test",
            ))),
            txt_resolver: Some(std::sync::Arc::new(ses_relay::tools::dns::StaticResolver(
                answers,
            ))),
        };
        let server = Server::bind(&config, options).await.expect("relay starts");
        let addrs = server.local_addrs();
        let addr = addrs.iter().find(|(_, tls)| !tls).map(|(a, _)| *a).unwrap();
        let tls_addr = addrs.iter().find(|(_, tls)| *tls).map(|(a, _)| *a);
        let shutdown = server.shutdown();
        let admin_addr = server.admin_addr();
        let control = server.control();
        let handle = tokio::spawn(server.run());
        RunningRelay {
            addr,
            tls_addr,
            admin_addr,
            control,
            shutdown,
            handle,
        }
    }

    /// The admin API's address (the config must have one).
    pub fn admin(&self) -> SocketAddr {
        self.admin_addr.expect("an admin API listener")
    }

    pub async fn stop(self) -> bool {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("relay stops")
            .unwrap()
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost, as PEM files.
pub struct TestCa {
    pub dir: TempDir,
    pub ca_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = TempDir::new("ca");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path("key.pem"), key.serialize_pem()).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            dir,
        }
    }

    pub fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.dir.path("cert.pem"),
            key: self.dir.path("key.pem"),
        }
    }

    /// A client connector that trusts only this CA.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config =
            rustls::ClientConfig::builder_with_provider(ses_relay::connection::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }
}

/// A TXT "resolver" that knows one record.
struct OneRecord(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for OneRecord {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// Verifies every DKIM signature of `message` with mail-auth, the public key
/// taken from `record` published at `<selector>._domainkey.<domain>`.
pub async fn verify_dkim(
    message: &[u8],
    selector: &str,
    domain: &str,
    record: &str,
) -> Vec<DkimResult> {
    let key = DomainKey::parse(record.as_bytes()).expect("TXT record parses");
    let cache = OneRecord(Mutex::new(HashMap::new()));
    cache.insert(
        format!("{selector}._domainkey.{domain}.").into_boxed_str(),
        Txt::from(key),
        Instant::now() + Duration::from_secs(3600),
    );
    let authenticator = MessageAuthenticator::new_cloudflare_tls().unwrap();
    let parsed = AuthenticatedMessage::parse(message).expect("message parses");
    authenticator
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .await
        .iter()
        .map(|out| out.result().clone())
        .collect()
}

/// Header field names of a message, in order.
pub fn header_names(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']) && !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
        .collect()
}

/// Runs the `ses-relay` binary with `args` from the crate root, without
/// `RUST_LOG`: exit code, stdout, stderr.
pub fn ses_relay(args: &[&str]) -> (i32, String, String) {
    ses_relay_with(args, |_| {})
}

/// [`ses_relay`] toward a relay whose config says port 0: the admin API at
/// `admin` (`SES_RELAY__ADMIN__LISTEN`), the rest of the config as it is.
pub fn ses_relay_against(admin: SocketAddr, args: &[&str]) -> (i32, String, String) {
    ses_relay_with(args, |command| {
        command.env("SES_RELAY__ADMIN__LISTEN", admin.to_string());
    })
}

/// [`ses_relay`], the command first changed by `adjust` (its environment,
/// its directory).
pub fn ses_relay_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ses-relay"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG");
    adjust(&mut command);
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
