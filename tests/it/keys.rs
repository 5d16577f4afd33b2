//! Fresh asymmetric key pairs for token tests, written with openssl. Shared by the
//! integration tests and the library's unit tests (src/gateway/auth.rs includes
//! this file), so both make keys the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a fresh `kind` ("rsa": RSA 2048, otherwise EC P-256) key pair into `dir`:
/// (private key PEM path, public key PEM path).
pub(crate) fn keypair(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{kind}.key")),
        dir.join(format!("{kind}.pub")),
    );
    let genpkey: &[&str] = if kind == "rsa" {
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]
    } else {
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]
    };
    let openssl = |args: &[&str], from: Option<&Path>, to: &Path| {
        let mut cmd = Command::new("openssl");
        cmd.args(args);
        if let Some(from) = from {
            cmd.arg("-in").arg(from);
        }
        let ok = cmd
            .arg("-out")
            .arg(to)
            .status()
            .expect("openssl is installed");
        assert!(ok.success(), "openssl {args:?} failed");
    };
    openssl(genpkey, None, &private);
    openssl(&["pkey", "-pubout"], Some(&private), &public);
    (private, public)
}
