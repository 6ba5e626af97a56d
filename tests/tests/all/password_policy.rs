//! The bundled password-policy plugin, loaded by the real host from a real directory.

use harness::{PluginDir, host_with_password_policy, password, password_policy_component, slot};
use policy_host::{
    AttributeValue, PasswordInput, PluginError, PluginKind, PolicyHost, Verdict,
    artifact_cache::sha256_hex,
};

async fn codes(host: &PolicyHost, input: &PasswordInput) -> Vec<String> {
    let record = host
        .try_evaluate_password("password-policy", input)
        .await
        .expect("the plugin decides");
    record
        .decision
        .codes()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn accepts_good_passwords_and_names_every_broken_rule() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("correct horse battery staple", &[]),
        ("Grüße aus München, lieber Freund", &[]),
        ("пароль для моей почты зимой", &[]),
        ("東京の夜は静かで星がとても綺麗です", &[]),
        ("🦀 crabs 🦀 walk 🦀 sideways 🦀", &[]),
        ("short", &["too-short"]),
        ("password", &["too-short", "common-password"]),
        ("password1234567", &["common-password"]),
        ("P@ssw0rd2024!!!!", &["common-password"]),
        ("qwertyuiopasdfghjkl", &["sequential"]),
        ("aaaaaaaaaaaaaaaa", &["repetitive"]),
        ("abcdefghijklmnopq", &["sequential"]),
        ("1234567890123456", &["sequential"]),
        ("tab\tinside a long password", &["control-character"]),
    ];
    for (candidate, expected) in cases {
        assert_eq!(
            codes(&host, &password(candidate)).await,
            *expected,
            "password {candidate:?}"
        );
    }
}

#[tokio::test]
async fn length_is_counted_in_code_points_after_nfkc() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    // Fifteen full-width letters: 45 bytes of UTF-8, fifteen code points after NFKC.
    let full_width = "ｑｕｉｅｔｍｏｏｎｌｉｇｈｔｒ";
    let record = host
        .try_evaluate_password("password-policy", &password(full_width))
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Allow);
    assert_eq!(
        record.decision.attribute("length"),
        Some(&AttributeValue::Integer(15))
    );
    // Full-width "password" is still the common password.
    assert!(
        codes(&host, &password("ｐａｓｓｗｏｒｄ１２３４５６７"))
            .await
            .contains(&"common-password".to_owned())
    );
    // Eighteen code points typed, fourteen after composition: too short.
    let composed = "e\u{301}cole e\u{301}te\u{301} cafe\u{301}";
    assert_eq!(composed.chars().count(), 18);
    assert_eq!(codes(&host, &password(composed)).await, ["too-short"]);
}

#[tokio::test]
async fn long_passwords_are_accepted_up_to_the_maximum_and_refused_beyond() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    let passphrase = "the quiet harbour keeps its lanterns lit for every late sailor!!";
    assert_eq!(passphrase.chars().count(), 64);
    assert!(codes(&host, &password(passphrase)).await.is_empty());
    let four_kib = "q".repeat(4096);
    let record = host
        .try_evaluate_password("password-policy", &password(&four_kib))
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Deny);
    assert_eq!(record.decision.codes(), ["too-long"]);
    assert!(record.decision.findings[0].message.contains("64"));
}

#[tokio::test]
async fn inputs_past_the_host_limit_never_reach_the_plugin() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    let huge = "x".repeat(1 << 20);
    let error = host
        .try_evaluate_password("password-policy", &password(&huge))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PluginError::InputTooLarge { size, .. } if size == 1 << 20),
        "{error}"
    );
    // Through the fail policy (closed for password policy): a deny that says why.
    let record = host
        .evaluate_password("password-policy", &password(&huge))
        .await;
    assert_eq!(record.decision.verdict, Verdict::Deny);
    assert_eq!(record.decision.codes(), ["password-policy-unavailable"]);
    assert!(record.fail_policy_applied.is_some());
}

#[tokio::test]
async fn context_words_and_mfa_reach_the_plugin() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    let context = vec![
        "maria.gonzalez@example.org".to_owned(),
        "Maria Gonzalez".to_owned(),
    ];
    let with_context = |candidate: &str| PasswordInput {
        password: candidate.to_owned(),
        has_mfa: false,
        context_words: context.clone(),
    };
    assert_eq!(
        codes(&host, &with_context("maria.gonzalez@example.org")).await,
        ["context-word"]
    );
    assert_eq!(
        codes(&host, &with_context("MariaGonzalez2024")).await,
        ["context-word"]
    );
    assert!(
        codes(&host, &with_context("maria sings in the morning"))
            .await
            .is_empty()
    );

    let short = PasswordInput {
        password: "tulip-orbit".to_owned(),
        has_mfa: true,
        context_words: vec![],
    };
    let record = host
        .try_evaluate_password("password-policy", &short)
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Allow);
    assert_eq!(
        record.decision.attribute("min-length"),
        Some(&AttributeValue::Integer(8))
    );
    assert_eq!(codes(&host, &password("tulip-orbit")).await, ["too-short"]);
}

#[tokio::test]
async fn settings_come_from_the_host_configuration() {
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    let mut config = dir.config();
    config.slots.insert(
        "password-policy".to_owned(),
        slot(
            PluginKind::PasswordPolicy,
            &[
                ("min-length", "20"),
                ("service-name", "Acme Identity"),
                ("blocked-words", "acme widget,wile e coyote"),
            ],
        ),
    );
    let host = PolicyHost::start(&config).await.unwrap();
    assert_eq!(
        codes(&host, &password("correct horse battery")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        codes(&host, &password("a correct horse")).await,
        ["too-short"]
    );
    assert_eq!(
        codes(&host, &password("AcmeIdentity12345678")).await,
        ["context-word"]
    );
    assert_eq!(
        codes(&host, &password("Acme-Widget-20242024")).await,
        ["blocked-word"]
    );
    assert_eq!(
        codes(&host, &password("Wile E. Coyote 20242024")).await,
        ["blocked-word"]
    );
}

#[tokio::test]
async fn every_decision_names_the_plugin_version_and_hash() {
    let (_dir, host) = host_with_password_policy().await.unwrap();
    let record = host
        .try_evaluate_password("password-policy", &password("correct horse battery staple"))
        .await
        .unwrap();
    let plugin = record.plugin.expect("a plugin decided");
    assert_eq!(&*plugin.name, "password-policy");
    assert_eq!(&*plugin.version, password_policy::PLUGIN_VERSION);
    let bytes = std::fs::read(password_policy_component()).unwrap();
    assert_eq!(*plugin.sha256, sha256_hex(&bytes));
    let status = host.catalog().status();
    let slot = status
        .iter()
        .find(|slot| slot.name == "password-policy")
        .unwrap();
    assert_eq!(slot.current.as_ref().unwrap().decisions_served, 1);
}

#[tokio::test]
async fn the_host_and_the_native_rules_agree() {
    // The same rules compiled natively (what the benchmark compares against) give the same
    // findings as the component: the component is the rules, not a reimplementation.
    let (_dir, host) = host_with_password_policy().await.unwrap();
    for candidate in [
        "correct horse battery staple",
        "password1234567",
        "ｐａｓｓｗｏｒｄ",
        "abcdefghijklmnop",
        &"z".repeat(300),
    ] {
        let native = password_policy::rules::evaluate(
            password_policy::rules::PasswordInput {
                password: candidate,
                has_mfa: false,
                context_words: &[],
            },
            &password_policy::settings::PolicySettings::default(),
        );
        let native_codes: Vec<&str> = native.findings.iter().map(|finding| finding.code).collect();
        assert_eq!(
            codes(&host, &password(candidate)).await,
            native_codes,
            "{candidate:?}"
        );
    }
}
