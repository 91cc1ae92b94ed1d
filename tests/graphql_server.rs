//! A small GraphQL API (async-graphql) that the test HTTP server mounts at `/graphql`, so
//! end-to-end tests drive the product's graphql steps against a real implementation.
//!
//! Schema:
//!
//! ```graphql
//! type Query {
//!   hello(name: String!): String!
//!   user(id: ID!): User
//!   secret: String          # always fails with "not authorized"
//! }
//! type Mutation { createUser(name: String!): User! }
//! type User { id: ID!, name: String!, email: String! }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_graphql::{EmptySubscription, ID, Object, Schema, SimpleObject};

/// The schema served at `/graphql`.
pub type TestSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema over `users`; the caller keeps a clone of `users` to reset it.
pub fn schema(users: Users) -> TestSchema {
    Schema::build(
        Query {
            users: users.clone(),
        },
        Mutation { users },
        EmptySubscription,
    )
    .finish()
}

/// A user as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, SimpleObject)]
pub struct User {
    pub id: ID,
    pub name: String,
    pub email: String,
}

/// The user table, shared between the schema and the server so `reset` can reseed it.
#[derive(Clone, Debug)]
pub struct Users {
    table: Arc<Mutex<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: BTreeMap<u64, User>,
    next_id: u64,
}

impl Default for Users {
    fn default() -> Self {
        let users = Self {
            table: Arc::default(),
        };
        users.reset();
        users
    }
}

impl Users {
    /// The seeded table: 1 "ada" and 2 "grace"; created users get ids 3, 4, ...
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to the seeded table.
    pub fn reset(&self) {
        let mut table = self.table();
        table.by_id.clear();
        for (id, name) in [(1, "ada"), (2, "grace")] {
            table.by_id.insert(id, user(id, name));
        }
        table.next_id = 3;
    }

    /// The user with `id`, if any (ids that are not numbers match nobody).
    pub fn get(&self, id: &str) -> Option<User> {
        let id = id.parse::<u64>().ok()?;
        self.table().by_id.get(&id).cloned()
    }

    /// Adds a user with the next free id.
    pub fn create(&self, name: &str) -> User {
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        let created = user(id, name);
        table.by_id.insert(id, created.clone());
        created
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A resolver that panicked mid-update leaves at worst a half-added user, which is
        // still better for a test than cascading panics in every later request.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn user(id: u64, name: &str) -> User {
    User {
        id: ID(id.to_string()),
        name: name.to_owned(),
        email: format!("{name}@example.com"),
    }
}

/// Query root.
pub struct Query {
    users: Users,
}

#[Object]
impl Query {
    /// "hello <name>".
    async fn hello(&self, name: String) -> String {
        format!("hello {name}")
    }

    /// The user with `id`, or null.
    async fn user(&self, id: ID) -> Option<User> {
        self.users.get(&id)
    }

    /// Always an error, so tests see a response with both `data` and `errors`.
    async fn secret(&self) -> async_graphql::Result<Option<String>> {
        Err(async_graphql::Error::new("not authorized"))
    }
}

/// Mutation root.
pub struct Mutation {
    users: Users,
}

#[Object]
impl Mutation {
    /// Adds a user, visible to later `user` queries.
    async fn create_user(&self, name: String) -> User {
        self.users.create(&name)
    }
}
