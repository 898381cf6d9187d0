//! Signs, or verifies, a module or component with wascap itself, to check Arbiter's code against it.
//!   wascap-fixture sign IN OUT ACCOUNT_SEED COMPONENT_SEED NAME
//!   wascap-fixture verify FILE
use std::fs;

use wascap::jwt::{validate_token, Claims, Component};
use wascap::wasm::{embed_claims, extract_claims};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sign") if args.len() == 7 => {
            let input = fs::read(&args[2]).expect("cannot read the input");
            let account = nkeys::KeyPair::from_seed(&args[4]).expect("not an account seed");
            let component = nkeys::KeyPair::from_seed(&args[5]).expect("not a component seed");
            let claims = Claims::<Component>::new(
                args[6].clone(),
                account.public_key(),
                component.public_key(),
                Some(vec!["fixture".to_string()]),
                false,
                Some(1),
                Some("0.1.0".to_string()),
                None,
            );
            let signed = embed_claims(&input, &claims, &account).expect("wascap could not sign");
            fs::write(&args[3], signed).expect("cannot write the output");
        }
        Some("verify") if args.len() == 3 => {
            let bytes = fs::read(&args[2]).expect("cannot read the file");
            let token = extract_claims(bytes).expect("wascap refused the claims").expect("no claims");
            let validation = validate_token::<Component>(&token.jwt).expect("invalid token");
            println!(
                "issuer={} hash={} signature_valid={} expired={}",
                token.claims.issuer,
                token.claims.metadata.map(|m| m.module_hash).unwrap_or_default(),
                validation.signature_valid,
                validation.expired,
            );
        }
        _ => {
            eprintln!("usage: wascap-fixture sign IN OUT ACCOUNT_SEED COMPONENT_SEED NAME | verify FILE");
            std::process::exit(2);
        }
    }
}
