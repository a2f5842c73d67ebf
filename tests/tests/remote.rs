//! Remote access: a warpd whose configuration opens a TLS listener, and
//! `warpctl --remote` against it. A test CA made here (rcgen) signs the
//! daemon's certificate and the clients'. An authorised client lists,
//! shows, prints events, exports, replays (under gdb too) and removes its
//! recordings; a client mapped to another uid sees none of them; an
//! operator sees them all; a certificate the configuration does not name,
//! one from another CA, an expired one and a plain-text client are refused;
//! what needs this machine (record, gc, doctor) is refused with --remote.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use warp_tests::{
    default_timeout, gdb_present, product_binary, run, ConfiguredDaemon, Flavour, Input, Outcome, Spec, Status,
    WarpHome,
};

/// A CA that signs certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A certificate for `names` (DNS subjectAltNames), for a server or a
    /// client, optionally expired: its PEM and its key's PEM.
    fn sign(&self, names: &[&str], server: bool, expired: bool) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages =
            vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The files of one client identity.
struct Client {
    cert: PathBuf,
    key: PathBuf,
}

fn write_client(dir: &Path, tag: &str, (cert, key): (String, String)) -> Client {
    let client = Client { cert: dir.join(format!("{tag}.pem")), key: dir.join(format!("{tag}.key")) };
    fs::write(&client.cert, cert).unwrap();
    fs::write(&client.key, key).unwrap();
    client
}

/// A warpd started with a configuration, and where its remote listener is.
struct Daemon {
    _process: ConfiguredDaemon,
    addr: String,
}

/// Starts `warpd --embedded --config FILE` for `home`; its remote port
/// comes from its log.
fn start_daemon(home: &WarpHome, config: &Path) -> Daemon {
    let process = home.start_daemon_with_config(config, "listening for remote callers");
    let port = process.line.rsplit_once("addr=127.0.0.1:").map(|(_, p)| p.trim().to_string());
    let addr = format!("localhost:{}", port.unwrap_or_else(|| panic!("no address in {:?}", process.line)));
    Daemon { _process: process, addr }
}

/// `warpctl --remote ADDR --cert --key --ca ARGS...`.
fn remote(home: &WarpHome, daemon: &Daemon, client: &Client, ca: &Path, args: &[&str]) -> Outcome {
    let mut cmd = home.warpctl();
    cmd.arg("--remote").arg(&daemon.addr).arg("--cert").arg(&client.cert).arg("--key").arg(&client.key);
    cmd.arg("--ca").arg(ca).args(args);
    run(cmd, &format!("`warpctl --remote {} {}`", daemon.addr, args.join(" ")), &Input::Null, None, default_timeout())
}

#[test]
fn remote_callers_are_authenticated_and_see_what_their_certificate_may() {
    let home = WarpHome::new("remote");
    let dir = home.scratch("pki");
    let ca = Ca::new("warpspeed test CA");
    let ca_pem = dir.join("ca.pem");
    fs::write(&ca_pem, ca.issuer.pem()).unwrap();
    let (server_cert, server_key) = ca.sign(&["localhost"], true, false);
    fs::write(dir.join("server.pem"), server_cert).unwrap();
    fs::write(dir.join("server.key"), server_key).unwrap();
    // SAFETY: getuid has no arguments and cannot fail.
    let me = unsafe { libc::getuid() };
    let alice = write_client(&dir, "alice", ca.sign(&["alice"], false, false));
    let bob = write_client(&dir, "bob", ca.sign(&["bob"], false, false));
    let ops = write_client(&dir, "ops", ca.sign(&["ops.example.org"], false, false));
    let stranger = write_client(&dir, "stranger", ca.sign(&["mallory"], false, false));
    let expired = write_client(&dir, "expired", ca.sign(&["alice"], false, true));
    let other_ca = Ca::new("another CA");
    let forged = write_client(&dir, "forged", other_ca.sign(&["alice"], false, false));
    let other = if me == 4242 { 4243 } else { 4242 };
    let config = dir.join("warpd.toml");
    fs::write(
        &config,
        format!(
            "[remote]\nlisten = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n\n\
             [[remote.client]]\nname = \"alice\"\nuid = {me}\n\n\
             [[remote.client]]\nname = \"bob\"\nuid = {other}\n\n\
             [[remote.client]]\nname = \"ops.example.org\"\nrole = \"operator\"\n"
        ),
    )
    .unwrap();
    let daemon = start_daemon(&home, &config);

    // Recorded locally, through the same daemon's unix socket.
    let spec = Spec::prog("hello", Flavour::Static);
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();

    // Alice (this uid): ls, show, events, export, replay.
    let o = remote(&home, &daemon, &alice, &ca_pem, &["ls"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert!(o.stdout_str().contains(&id), "{}", o.text());
    let o = remote(&home, &daemon, &alice, &ca_pem, &["show", &id]);
    assert!(o.status == Status::Exited(0) && o.stdout_str().contains("hello"), "{}", o.text());
    let o = remote(&home, &daemon, &alice, &ca_pem, &["events", &id]);
    assert!(o.status == Status::Exited(0) && o.stdout_str().contains("write(1, "), "{}", o.text());
    let exported = dir.join("hello.warp");
    let o = remote(&home, &daemon, &alice, &ca_pem, &["export", &id, "-o", exported.to_str().unwrap()]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    let mut local_export = home.warpctl();
    local_export.args(["export", &id, "-o", "-"]);
    let local = run(local_export, "local export", &Input::Null, None, default_timeout());
    assert_eq!(fs::read(&exported).unwrap(), local.stdout, "the remote export is the local one");
    let o = remote(&home, &daemon, &alice, &ca_pem, &["replay", &id]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert_eq!(o.stdout, recorded.outcome.stdout, "the remote replay prints what the recording did");

    // Bob (another uid) sees none of it, and cannot reach it by its id.
    let o = remote(&home, &daemon, &bob, &ca_pem, &["ls", "--json"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert!(!o.stdout_str().contains(&id), "{}", o.text());
    for args in [&["show", id.as_str()][..], &["replay", &id], &["rm", &id], &["export", &id, "-o", "-"]] {
        let o = remote(&home, &daemon, &bob, &ca_pem, args);
        assert_ne!(o.status, Status::Exited(0), "bob {args:?}: {}", o.text());
        assert!(o.stderr_str().contains("no session"), "bob {args:?}: {}", o.text());
    }
    // What bob imports is bob's: he sees it, alice (not root) would not.
    let o = remote(&home, &daemon, &bob, &ca_pem, &["import", exported.to_str().unwrap()]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    let o = remote(&home, &daemon, &bob, &ca_pem, &["ls", "--json"]);
    assert_eq!(o.stdout_str().matches("\"id\"").count(), 1, "bob's import is his: {}", o.text());

    // The operator sees every user's recordings, but owns none to import.
    let o = remote(&home, &daemon, &ops, &ca_pem, &["ls", "--json"]);
    assert!(o.stdout_str().contains(&id) && o.stdout_str().matches("\"id\"").count() == 2, "{}", o.text());
    let o = remote(&home, &daemon, &ops, &ca_pem, &["import", exported.to_str().unwrap()]);
    assert_ne!(o.status, Status::Exited(0), "{}", o.text());
    assert!(o.stderr_str().contains("an operator (ops.example.org) has no uid"), "{}", o.text());

    // A certificate the configuration does not name, one of another CA,
    // an expired one: refused, and they learn nothing.
    for (who, client, why) in [
        ("stranger", &stranger, "names no client"),
        ("forged", &forged, "did not accept the certificate"),
        ("expired", &expired, "did not accept the certificate"),
    ] {
        let o = remote(&home, &daemon, client, &ca_pem, &["ls"]);
        assert_eq!(o.status, Status::Exited(125), "{who}: {}", o.text());
        assert!(!o.stdout_str().contains(&id), "{who}: {}", o.text());
        assert!(o.stderr_str().contains(&format!("warpctl: warpd at {}", daemon.addr)), "{who}: {}", o.text());
        assert!(o.stderr_str().contains(why), "{who}: {}", o.text());
    }
    // A daemon certificate checked against the wrong CA: refused by warpctl.
    let other_ca_pem = dir.join("other-ca.pem");
    fs::write(&other_ca_pem, other_ca.issuer.pem()).unwrap();
    let o = remote(&home, &daemon, &alice, &other_ca_pem, &["ls"]);
    assert_eq!(o.status, Status::Exited(125), "{}", o.text());
    assert!(!o.stdout_str().contains(&id), "{}", o.text());

    // Plain text: an HTTP/2 preface without TLS gets no HTTP/2 back.
    let port: u16 = daemon.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    // An HTTP/2 server answers with a SETTINGS frame (type 4 at byte 3).
    assert!(reply.len() < 9 || reply[3] != 4, "a plain-text client got HTTP/2: {reply:?}");

    // The daemon's log says why each was refused (written as it happens:
    // wait a moment for the last).
    let needles = [
        "remote certificate names no configured client",
        "refused in the TLS handshake peer=127.0.0.1:",
        "reason=invalid peer certificate: UnknownIssuer",
        "reason=invalid peer certificate: certificate expired",
        "reason=received fatal alert: UnknownCA",
        "reason=received corrupt message",
        "remote client connected peer=127.0.0.1:",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = fs::read_to_string(home.path().join("warpd-config.log")).unwrap();
        match needles.iter().find(|n| !log.contains(*n)) {
            None => break,
            Some(n) if Instant::now() > deadline => panic!("{n:?} not in warpd's log:\n{log}"),
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }

    // What needs this machine is refused before anything is sent.
    for (args, code, needle) in [
        (&["record", "--", "/bin/true"][..], 125, "record runs the program on this machine"),
        (&["gc"], 2, "gc is for the daemon's own machine"),
        (&["doctor"], 2, "doctor checks this machine"),
    ] {
        let o = remote(&home, &daemon, &alice, &ca_pem, args);
        assert_eq!(o.status, Status::Exited(code), "{args:?}: {}", o.text());
        assert!(o.stderr_str().contains(needle), "{args:?}: {}", o.text());
    }
    // Without credentials, warpctl says where they come from.
    let mut cmd = home.warpctl();
    cmd.env("XDG_CONFIG_HOME", &dir).args(["--remote", &daemon.addr, "ls"]);
    let o = run(cmd, "warpctl --remote without credentials", &Input::Null, None, default_timeout());
    assert_eq!(o.status, Status::Exited(2), "{}", o.text());
    assert!(o.stderr_str().contains("--remote needs --cert FILE (or WARP_REMOTE_CERT"), "{}", o.text());
    // ... and reads them from remote.toml.
    fs::create_dir_all(dir.join("warpspeed")).unwrap();
    fs::write(
        dir.join("warpspeed/remote.toml"),
        "cert = \"../alice.pem\"\nkey = \"../alice.key\"\nca = \"../ca.pem\"\n",
    )
    .unwrap();
    let mut cmd = home.warpctl();
    cmd.env("XDG_CONFIG_HOME", &dir).args(["--remote", &daemon.addr, "ls"]);
    let o = run(cmd, "warpctl --remote with remote.toml", &Input::Null, None, default_timeout());
    assert!(o.status == Status::Exited(0) && o.stdout_str().contains(&id), "{}", o.text());

    // A scripted gdb session, gdb here, the replay there.
    if gdb_present() {
        let mut cmd = home.warpctl();
        cmd.arg("--remote").arg(&daemon.addr).arg("--cert").arg(&alice.cert).arg("--key").arg(&alice.key);
        cmd.arg("--ca").arg(&ca_pem).args(["replay", &id, "--gdb", "--", "-batch", "-nx"]);
        cmd.args(["-ex", "break main", "-ex", "continue", "-ex", "bt", "-ex", "continue"]);
        let o = run(cmd, "remote replay --gdb", &Input::Null, None, default_timeout());
        let all = o.text();
        assert_eq!(o.status, Status::Exited(0), "{all}");
        assert!(all.contains("Breakpoint 1, main") && all.contains("Hello, world!"), "{all}");
        assert!(all.contains("exited normally"), "{all}");
    }

    // pull: the recording copied to another daemon's store (another
    // machine's), checked, imported, replayed there.
    let desk = WarpHome::new("remote_desk");
    let cache = dir.join("cache");
    let pull = |client: &Client, id: &str| {
        let mut cmd = desk.warpctl();
        cmd.env("XDG_CACHE_HOME", &cache).arg("--cert").arg(&client.cert).arg("--key").arg(&client.key);
        cmd.arg("--ca").arg(&ca_pem).args(["pull", &daemon.addr, id]);
        run(cmd, "warpctl pull", &Input::Null, None, default_timeout())
    };
    let pulled = |o: &Outcome| {
        assert_eq!(o.status, Status::Exited(0), "{}", o.text());
        let new_id = o.stdout_str().trim().to_string();
        let r = desk.replay(&new_id, &[]);
        assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());
        assert_eq!(r.outcome.stdout, recorded.outcome.stdout, "the pulled recording replays as the original");
        new_id
    };
    let o = pull(&alice, &id);
    let first = pulled(&o);
    assert_ne!(first, id, "a pulled recording gets an id of its own here");
    assert!(o.stderr_str().contains(&format!("pulled {id} from {}", daemon.addr)), "{}", o.text());
    let part = cache.join("warpspeed/pull").join(format!("localhost_{port}-{id}.warp.part"));
    assert!(!part.exists(), "nothing is kept once imported");
    // Cut short after half the file: the next pull goes on from there.
    let whole = fs::read(&exported).unwrap();
    fs::write(&part, &whole[..whole.len() / 2]).unwrap();
    let o = pull(&alice, &id);
    assert!(o.stderr_str().contains(&format!("resuming the pull of {id} at byte {}", whole.len() / 2)), "{}", o.text());
    pulled(&o);
    assert!(!part.exists());
    // What was kept is damaged: refused, removed, and the next pull works.
    let mut damaged = whole[..whole.len() / 2].to_vec();
    damaged[20] ^= 0xff;
    fs::write(&part, &damaged).unwrap();
    let o = pull(&alice, &id);
    assert_eq!(o.status, Status::Exited(125), "{}", o.text());
    assert!(o.stderr_str().contains("does not match"), "{}", o.text());
    assert!(!part.exists(), "the damaged piece is removed");
    pulled(&pull(&alice, &id));
    // Longer than the file: not a piece of it.
    fs::write(&part, [&whole[..], b"more"].concat()).unwrap();
    let o = pull(&alice, &id);
    assert!(o.status != Status::Exited(0) && o.stderr_str().contains("is longer than"), "{}", o.text());
    assert!(!part.exists());
    // Bob cannot pull what is not his.
    let o = pull(&bob, &id);
    assert!(o.status == Status::Exited(2) && o.stderr_str().contains("no session"), "{}", o.text());

    // Alice removes her recording remotely.
    let o = remote(&home, &daemon, &alice, &ca_pem, &["rm", &id]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    let o = remote(&home, &daemon, &alice, &ca_pem, &["show", &id]);
    assert_ne!(o.status, Status::Exited(0), "{}", o.text());
}

#[test]
fn a_configuration_mistake_is_refused_at_start_with_its_line() {
    let home = WarpHome::new("remote_cfg");
    let dir = home.scratch("cfg");
    let config = dir.join("warpd.toml");
    fs::write(
        &config,
        "[remote]\nlisten = \"127.0.0.1:0\"\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\nclients = 1\n",
    )
    .unwrap();
    let start = |config: &Path| {
        let mut cmd = Command::new(product_binary("warpd"));
        cmd.args(["--embedded", "--config"]).arg(config).env("WARP_HOME", home.path());
        run(cmd, "warpd --config", &Input::Null, None, default_timeout())
    };
    let o = start(&config);
    assert_eq!(o.status, Status::Exited(1), "{}", o.text());
    assert!(o.stderr_str().contains(&format!("{}:6:1: unknown field `clients`", config.display())), "{}", o.text());
    // Nothing started: no socket.
    assert!(!home.path().join("warpd.sock").exists());
    // Files it names are read at start too.
    fs::write(&config, "[remote]\nlisten = \"127.0.0.1:0\"\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n[[remote.client]]\nname = \"a\"\nuid = 1\n")
        .unwrap();
    let o = start(&config);
    assert_eq!(o.status, Status::Exited(1), "{}", o.text());
    assert!(
        o.stderr_str().contains(&format!("cannot read remote.cert {}", dir.join("s.pem").display())),
        "{}",
        o.text()
    );
}
