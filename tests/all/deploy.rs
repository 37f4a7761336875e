//! The Kubernetes manifests in `deploy/kubernetes` parse, and agree with the CLI (its
//! flags, the metrics port, the probes' paths) and with the config they ship (its
//! environment variables are the Secret's, its folders are mounted). No cluster runs here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sluice::config::{Config, StateBackend};
use yaml_rust2::{Yaml, YamlLoader};

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn manifest(name: &str) -> Yaml {
    let text = std::fs::read_to_string(folder().join(name)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn text(yaml: &Yaml) -> &str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("not a string: {yaml:?}"))
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_agree_with_the_cli_and_the_config() {
    // Every manifest is listed by the kustomization, and each parses.
    let listed: BTreeSet<String> = manifest("kustomization.yaml")["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|r| text(r).to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(folder())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);

    let deployment = manifest("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| text(a).to_string())
        .collect();
    assert_eq!(args[0], "serve");

    // Every flag is one `sluice serve` has, and its value is one it takes.
    let help = crate::common::sluice(&["serve", "--help"], Path::new("unused"), &[]).await;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(arg.as_str()),
            "`sluice serve` has no {arg}:\n{help}"
        );
    }
    let grace = humantime::parse_duration(flag(&args, "--grace")).unwrap();
    humantime::parse_duration(flag(&args, "--lease-timeout")).unwrap();
    let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        termination > grace.as_secs(),
        "the pod outlives the grace period"
    );

    // The metrics address is the container's `metrics` port, which the probes use.
    let addr: std::net::SocketAddr = flag(&args, "--metrics-addr").parse().unwrap();
    let port = &container["ports"][0];
    assert_eq!(
        (text(&port["name"]), port["containerPort"].as_i64()),
        ("metrics", Some(i64::from(addr.port())))
    );
    assert!(
        addr.ip().is_unspecified(),
        "reachable by the kubelet and Prometheus"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            (text(&get["path"]), text(&get["port"])),
            (path, "metrics"),
            "{probe}"
        );
    }

    // The config file is the ConfigMap's, mounted where --config points.
    let config_map = manifest("configmap.yaml");
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let mount_of = |volume: &str| -> &str {
        let mount = mounts.iter().find(|m| text(&m["name"]) == volume).unwrap();
        text(&mount["mountPath"])
    };
    let config_path = Path::new(flag(&args, "--config"));
    let volumes = pod["volumes"].as_vec().unwrap();
    let config_volume = volumes
        .iter()
        .find(|v| !v["configMap"].is_badvalue())
        .unwrap();
    assert_eq!(
        text(&config_volume["configMap"]["name"]),
        text(&config_map["metadata"]["name"])
    );
    assert_eq!(
        config_path.parent().unwrap(),
        Path::new(mount_of(text(&config_volume["name"])))
    );
    let file = config_path.file_name().unwrap().to_str().unwrap();
    let toml = text(&config_map["data"][file]);

    // The config loads, keeps its state in PostgreSQL (a pool), and writes only where a
    // volume is mounted (the root file system is read-only).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), toml).unwrap();
    let config = Config::load(&dir.path().join(file)).unwrap();
    let StateBackend::Postgres { url_env, .. } = &config.state else {
        panic!("the workers of a pool share a state database");
    };
    assert!(deployment["spec"]["replicas"].as_i64().unwrap() >= 2);
    for folder in [&config.state_dir, config.cache_dir.as_ref().unwrap()] {
        assert!(
            mounts
                .iter()
                .any(|m| Path::new(text(&m["mountPath"])) == folder.as_path()),
            "{} is a mounted volume",
            folder.display()
        );
    }

    // Every environment variable the config reads is in the Secret the pods load.
    let secret = manifest("secret.yaml");
    assert_eq!(
        text(&container["envFrom"][0]["secretRef"]["name"]),
        text(&secret["metadata"]["name"])
    );
    let in_secret: BTreeSet<String> = secret["stringData"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| text(k).to_string())
        .collect();
    let mut needed = BTreeSet::from([url_env.clone()]);
    for sync in &config.syncs {
        needed.extend(sync.auth.env_vars().into_iter().map(|(_, v)| v.to_string()));
        needed.extend(
            sync.source
                .env_vars()
                .into_iter()
                .map(|(_, v)| v.to_string()),
        );
    }
    assert_eq!(needed, in_secret);

    // The disruption budget covers the pods.
    let pdb = manifest("pdb.yaml");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
}
