//! Accounts, their access keys, and the defaults every account has in every region
//! (the default VPC, its subnets and its default security group).

use kiln_store::accounts::{self, AccessKey, Account};
use kiln_store::{Scope, Transaction};
use kiln_types::AccountId;
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

use crate::{vpcs, Cloud, Result};

/// An account as just created, with the only copy of its secret key.
pub struct NewAccount {
    pub account: Account,
    pub key: AccessKey,
}

/// A fresh access key id: `AKIA` for long-term keys, `ASIA` for temporary ones.
pub(crate) fn access_key_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{tail}")
}

/// The account `kiln serve` makes on first start: the one who runs the cloud.
pub const OPERATOR: &str = "operator";

impl Cloud {
    /// Creates an account with one access key and its defaults in every region.
    pub fn create_account(&self, name: &str, is_provider: bool) -> Result<NewAccount> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(crate::Error::InvalidParameterValue(format!(
                "Account name '{name}' is invalid: use 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        self.store.write(|tx| {
            if accounts::by_name(tx, name)?.is_some() {
                return Err(crate::Error::InvalidParameterValue(format!("An account named '{name}' already exists")));
            }
            let account = Account {
                id: AccountId::generate().to_string(),
                name: name.to_owned(),
                is_provider,
                is_vendor: false,
                created_at: kiln_store::now(),
            };
            accounts::insert(tx, &account)?;
            let key = AccessKey {
                access_key_id: access_key_id("AKIA"),
                account_id: account.id.clone(),
                secret: Alphanumeric.sample_string(&mut rand::thread_rng(), 40),
                session: None,
            };
            accounts::insert_key(tx, &key)?;
            self.ensure_defaults_in(tx, &account.id)?;
            Ok(NewAccount { account, key })
        })
    }

    /// Whether `account` is the operator's, which alone may see the host's capacity.
    pub fn is_operator(&self, account: &str) -> Result<bool> {
        let operator = self.store.read(|c| accounts::by_name(c, OPERATOR))?;
        Ok(operator.is_some_and(|a| a.id == account))
    }

    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.store.read(|c| Ok(accounts::list(c)?))
    }

    pub fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        self.store.read(|c| Ok(accounts::by_name(c, name)?))
    }

    /// The access key record for an access key id, if it exists.
    pub fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>> {
        self.store.read(|c| Ok(accounts::key(c, access_key_id)?))
    }

    /// Makes sure every account has its defaults in every configured region (regions
    /// can be added to the configuration after accounts exist).
    pub fn ensure_defaults(&self) -> Result<()> {
        self.store.write(|tx| {
            for account in accounts::list(tx)? {
                self.ensure_defaults_in(tx, &account.id)?;
            }
            Ok(())
        })
    }

    fn ensure_defaults_in(&self, tx: &Transaction<'_>, account: &str) -> Result<()> {
        for region in &self.regions {
            let scope = Scope { account: account.to_owned(), region: region.name.clone() };
            vpcs::ensure_default_vpc(tx, &scope, region)?;
        }
        Ok(())
    }
}
