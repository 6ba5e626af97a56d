//! `user-service plugin …`: the publishing side of plugin distribution.
//!
//! ```text
//! user-service plugin keygen KEY_FILE            # writes KEY_FILE (secret) and KEY_FILE.pub
//! user-service plugin sign --key KEY_FILE COMPONENT.wasm
//!                                                # appends a signature to COMPONENT.wasm.minisig
//! user-service plugin verify --public-key KEY [--public-key KEY …] [--threshold N] COMPONENT.wasm
//! user-service plugin push [--insecure] COMPONENT.wasm oci://registry/repository:tag
//!                                                # pushes it with the signatures in COMPONENT.wasm.minisig
//! ```
//!
//! `push` prints the pinned `oci://…@sha256:…` reference to configure. Registry credentials
//! come from `REGISTRY_USERNAME` and `REGISTRY_PASSWORD` when set (never printed).

use anyhow::{Context, bail};
use policy_host::source::{
    oci::{OciReference, RegistryClient, RegistryCredentials},
    signature::{SigningKey, TrustConfig, TrustPolicy, TrustedKeyConfig},
    signature_path,
};
use std::{collections::BTreeMap, path::PathBuf};

const USAGE: &str = "usage:
  user-service plugin keygen KEY_FILE
  user-service plugin sign --key KEY_FILE COMPONENT.wasm
  user-service plugin verify --public-key KEY [--public-key KEY ...] [--threshold N] COMPONENT.wasm
  user-service plugin push [--insecure] COMPONENT.wasm oci://REGISTRY/REPOSITORY:TAG";

/// Runs `plugin <arguments>`.
pub async fn run(arguments: Vec<String>) -> anyhow::Result<()> {
    let mut arguments = arguments.into_iter();
    let command = arguments.next().unwrap_or_default();
    let mut flags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut positional = Vec::new();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--insecure" => {
                flags.entry(argument).or_default();
            }
            "--key" | "--public-key" | "--threshold" => {
                let value = arguments
                    .next()
                    .with_context(|| format!("{argument} needs a value\n{USAGE}"))?;
                flags.entry(argument).or_default().push(value);
            }
            _ if argument.starts_with("--") => bail!("unknown option {argument}\n{USAGE}"),
            _ => positional.push(argument),
        }
    }
    let flag = |name: &str| flags.get(name).and_then(|values| values.last()).cloned();
    match (command.as_str(), positional.as_slice()) {
        ("keygen", [key_file]) => keygen(PathBuf::from(key_file)),
        ("sign", [component]) => {
            let key = flag("--key").with_context(|| format!("sign needs --key\n{USAGE}"))?;
            sign(PathBuf::from(key), PathBuf::from(component))
        }
        ("verify", [component]) => {
            let keys = flags.get("--public-key").cloned().unwrap_or_default();
            let threshold = flag("--threshold")
                .map(|value| {
                    value
                        .parse::<usize>()
                        .context("--threshold must be a number")
                })
                .transpose()?;
            verify(&keys, threshold, PathBuf::from(component))
        }
        ("push", [component, reference]) => {
            push(
                PathBuf::from(component),
                reference,
                flags.contains_key("--insecure"),
            )
            .await
        }
        _ => bail!("{USAGE}"),
    }
}

fn keygen(key_file: PathBuf) -> anyhow::Result<()> {
    if key_file.exists() {
        bail!("{} exists; refusing to overwrite a key", key_file.display());
    }
    let key = SigningKey::generate()?;
    write_private(&key_file, &key.secret_key_text()?)?;
    let public = key.public_key_base64();
    let public_file = PathBuf::from(format!("{}.pub", key_file.display()));
    std::fs::write(&public_file, format!("{public}\n"))
        .with_context(|| format!("writing {}", public_file.display()))?;
    println!("{public}");
    eprintln!(
        "secret key: {} (unencrypted: keep it private); public key: {}",
        key_file.display(),
        public_file.display()
    );
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn sign(key_file: PathBuf, component: PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let key = SigningKey::from_secret_key_text(&text)?;
    let bytes =
        std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
    let file_name = component
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let signature = key.sign(&bytes, &format!("file:{file_name}"))?;
    let target = signature_path(&component);
    let mut existing = std::fs::read_to_string(&target).unwrap_or_default();
    if !existing.is_empty() && !existing.ends_with('\n') {
        existing.push('\n');
    }
    existing.push_str(&signature);
    std::fs::write(&target, existing).with_context(|| format!("writing {}", target.display()))?;
    eprintln!("signed {} -> {}", component.display(), target.display());
    Ok(())
}

fn verify(keys: &[String], threshold: Option<usize>, component: PathBuf) -> anyhow::Result<()> {
    if keys.is_empty() {
        bail!("verify needs at least one --public-key (base64, or a .pub file)\n{USAGE}");
    }
    let keys = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let path = PathBuf::from(key);
            let (id, public_key) = if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                (path.display().to_string(), text)
            } else {
                (format!("key-{}", index + 1), key.clone())
            };
            Ok(TrustedKeyConfig { id, public_key })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = TrustPolicy::from_config(&TrustConfig { keys, threshold })?;
    let bytes =
        std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
    let signatures_file = signature_path(&component);
    let signatures = std::fs::read_to_string(&signatures_file)
        .map(|text| vec![text])
        .unwrap_or_default();
    let verified = policy.verify(
        &component.display().to_string(),
        &signatures_file.display().to_string(),
        &bytes,
        &signatures,
    )?;
    println!("verified by: {}", verified.join(", "));
    Ok(())
}

async fn push(component: PathBuf, reference: &str, insecure: bool) -> anyhow::Result<()> {
    let reference = OciReference::parse(reference)?;
    if reference.digest.is_some() {
        bail!("push to a tag (oci://registry/repository:tag); the digest is what push prints");
    }
    let bytes =
        std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
    let signatures_file = signature_path(&component);
    let signatures: Vec<String> = std::fs::read_to_string(&signatures_file)
        .map(|text| policy_host::source::signature::split_signatures(&text))
        .unwrap_or_default();
    if signatures.is_empty() {
        eprintln!(
            "warning: {} not found or empty; pushing an unsigned component",
            signatures_file.display()
        );
    }
    let mut credentials = BTreeMap::new();
    if let (Ok(username), Ok(password)) = (
        std::env::var("REGISTRY_USERNAME"),
        std::env::var("REGISTRY_PASSWORD"),
    ) {
        credentials.insert(
            reference.registry.clone(),
            RegistryCredentials { username, password },
        );
    }
    let insecure: Vec<String> = if insecure {
        vec![reference.registry.clone()]
    } else {
        Vec::new()
    };
    let client = RegistryClient::new(&insecure, credentials);
    let digest = client.push_component(&reference, &bytes).await?;
    if !signatures.is_empty() {
        client
            .push_signatures(&reference, &digest, &signatures)
            .await?;
    }
    eprintln!(
        "pushed {} with {} signature(s)",
        component.display(),
        signatures.len()
    );
    println!("{}", reference.at_digest(&digest));
    Ok(())
}
