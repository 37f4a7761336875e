//! A component, a ledger or a state directory that is not what it should be: one clear
//! error saying what is wrong and what to do.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_component_is_said_in_one_line() {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        "these are my notes\nnot a connector\n",
    )
    .unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), dir.path().join("native.wasm")).unwrap();
    // The smallest core module: the magic and version 1.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (file, what) in [
        ("notes.txt", "the file is text"),
        ("native.wasm", "the file is an ELF executable"),
        (
            "core.wasm",
            "it is a core WebAssembly module; make it a component",
        ),
    ] {
        let config = write_config(
            dir.path(),
            &dest.base_url(),
            file,
            &[("s", &common::contacts_jsonl("a", 3), ACCEPT)],
            "",
        );
        let output = common::sluice(&["run"], &config, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("connector `c` is not a valid WebAssembly component: ")
                && stderr.contains(what)
                && stderr.contains(file),
            "{stderr}"
        );
        assert!(!stderr.contains("0x"), "{stderr}");
    }
    assert_eq!(dest.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ledger_is_named_with_what_to_do() {
    let (_dest, dir, config) = two_syncs(5).await;
    common::sluice_ok(&["run"], &config, &[]).await;
    let ledger = dir.path().join("state/ledger");

    // One entry that is not an entry.
    {
        let db = sled::open(&ledger).unwrap();
        db.open_tree("sync:first")
            .unwrap()
            .insert("a00003", &b"\xff\xfe"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let stderr = retry_while_locked(&["ledger", "list", "--sync", "first"], &config).await;
    assert!(
        stderr.contains(&format!(
            "the ledger at `{}` is damaged (the entry of `a00003` is unreadable",
            ledger.display()
        )) && stderr.contains("move it away")
            && stderr.contains("the next run sends every record again"),
        "{stderr}"
    );

    // Files overwritten with garbage.
    for entry in std::fs::read_dir(&ledger).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, vec![0xA5; 4096]).unwrap();
        }
    }
    let stderr = retry_while_locked(&["ledger", "list", "--sync", "first"], &config).await;
    assert!(
        stderr.contains(&format!(
            "the ledger at `{}` is damaged (",
            ledger.display()
        )) && stderr.contains("move it away"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// Runs a command that must fail, again while the ledger is still locked by this test's
/// own sled handle closing in the background: its stderr.
async fn retry_while_locked(args: &[&str], config: &Path) -> String {
    for _ in 0..100 {
        let output = common::sluice(args, config, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !stderr.contains("in use by another sluice process") {
            // Exit code 5: the state cannot be used (docs/cli.md).
            assert_eq!(output.status.code(), Some(5), "{stderr}");
            return stderr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger stayed locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_removed_during_a_run_fails_the_run() {
    let dest = common::rest_sim(RestMode::AcceptAll, Faults::slow(1, 150)).await;
    let (dir, config) = one_sync(
        &dest,
        &common::contacts_jsonl("a", 20),
        &format!("{ACCEPT}\nbatch_size = 2\nconcurrency = 1"),
    );
    let child = common::spawn_sluice(&["run", "--json"], &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dest.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed", "{summary}");
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("was removed during the run")
            && error.contains("nothing of this run was recorded"),
        "{error}"
    );
}
