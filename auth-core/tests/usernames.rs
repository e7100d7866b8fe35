//! Look-alike usernames through `Auth`: a name that looks like a taken one is either
//! the same account (`user_exists`, and it logs into that account) or refused
//! (`invalid_username`), never a second account.

mod common;

use auth_core::AuthApi;
use auth_core::api::RegisterRequest;
use common::*;

/// The error code of registering `username`.
async fn register_code(h: &Harness, username: &str) -> &'static str {
    err_code(
        h.auth
            .register(RegisterRequest {
                username: username.into(),
                password: "another password".into(),
                client: None,
            })
            .await,
    )
}

#[tokio::test]
async fn look_alikes_of_a_taken_name_are_not_new_accounts() {
    let h = harness();
    let admin = h.register("admin", PASSWORD).await;
    let cases = [
        (
            "Cyrillic \u{430} among Latin letters",
            "\u{430}dmin",
            "invalid_username",
        ),
        ("full-width \u{ff41}", "\u{ff41}dmin", "user_exists"),
        (
            "all full-width",
            "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
            "user_exists",
        ),
        (
            "mathematical bold",
            "\u{1d41a}\u{1d41d}\u{1d426}\u{1d422}\u{1d427}",
            "user_exists",
        ),
        ("mixed case", "AdMin", "user_exists"),
        ("rn for m", "adrnin", "user_exists"),
        (
            "Greek \u{3bf} among Latin letters",
            "adm\u{3bf}n",
            "invalid_username",
        ),
    ];
    for (what, name, code) in cases {
        assert_eq!(register_code(&h, name).await, code, "{what}: {name:?}");
    }
    assert_eq!(h.storage.user_count(), 1);

    // The same-key spellings log into the one account.
    for name in ["\u{ff41}dmin", "ADMIN", "adrnin"] {
        let t = h.login_ok(name, PASSWORD).await;
        let me = h.verify(&t.access_token).await.expect("verify");
        assert_eq!(me.user_id, admin.id, "{name:?}");
        assert_eq!(me.username, "admin", "{name:?}");
    }
    // A refused spelling is just bad credentials.
    assert_eq!(
        err_code(h.login("\u{430}dmin", PASSWORD).await),
        "invalid_credentials"
    );
}

#[tokio::test]
async fn a_whole_script_spoof_is_the_latin_account() {
    let h = harness();
    h.register("paypal", PASSWORD).await;
    // р а у р а ӏ: every letter Cyrillic, so single-script, but it is paypal.
    let cyrillic = "\u{440}\u{430}\u{443}\u{440}\u{430}\u{4cf}";
    assert_eq!(register_code(&h, cyrillic).await, "user_exists");
    assert_eq!(h.storage.user_count(), 1);

    // The other way round: the spoof first keeps the Latin name out.
    let h = harness();
    h.register(cyrillic, PASSWORD).await;
    assert_eq!(register_code(&h, "PayPal").await, "user_exists");
}

#[tokio::test]
async fn single_script_names_register_and_are_stored_in_nfkc() {
    let h = harness();
    for (typed, shown) in [
        (
            "\u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}",
            "\u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}",
        ),
        (
            "\u{438}\u{432}\u{430}\u{43d}_2000",
            "\u{438}\u{432}\u{430}\u{43d}_2000",
        ),
        ("\u{ff2a}ane", "Jane"),
        ("\u{fb01}nn", "finn"),
    ] {
        let user = h.register(typed, PASSWORD).await;
        assert_eq!(user.username, shown, "{typed:?}");
        let t = h.login_ok(shown, PASSWORD).await;
        assert_eq!(
            h.verify(&t.access_token).await.expect("verify").username,
            shown
        );
    }
    for mixed in ["\u{3a9}mega", "p\u{430}ypal"] {
        assert_eq!(
            register_code(&h, mixed).await,
            "invalid_username",
            "{mixed:?}"
        );
    }
    assert_eq!(h.storage.user_count(), 4);
}
