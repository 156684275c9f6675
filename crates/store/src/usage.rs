//! Usage counts: the `usage_counts` table and the [`UsageStore`] port on it.

use crate::{
    db::Arg,
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use taxbridge_domain::{
    ids::ApiKeyId,
    store::StoreResult,
    usage::{UsageCount, UsageStore},
};

struct UsageRow {
    day: String,
    api_key_id: String,
    source_platform: String,
    operation: String,
    count: i64,
}

impl FromColumns for UsageRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            day: c.text()?,
            api_key_id: c.text()?,
            source_platform: c.text()?,
            operation: c.text()?,
            count: c.int()?,
        })
    }
}

impl From<UsageRow> for UsageCount {
    fn from(row: UsageRow) -> Self {
        UsageCount {
            day: row.day,
            // Requests no key was behind are stored under the empty key id.
            api_key_id: (!row.api_key_id.is_empty()).then(|| ApiKeyId::from_string(row.api_key_id)),
            source_platform: row.source_platform,
            operation: row.operation,
            count: u64::try_from(row.count).unwrap_or(0),
        }
    }
}

#[async_trait]
impl UsageStore for Store {
    async fn add_usage(&self, counts: &[UsageCount]) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        for c in counts {
            tx.execute(
                "INSERT INTO usage_counts (day, api_key_id, source_platform, operation, count) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (day, api_key_id, source_platform, operation) \
                 DO UPDATE SET count = usage_counts.count + excluded.count",
                &[
                    c.day.as_str().into(),
                    c.api_key_id.as_ref().map_or("", |k| k.as_str()).into(),
                    c.source_platform.as_str().into(),
                    c.operation.as_str().into(),
                    i64::try_from(c.count).unwrap_or(i64::MAX).into(),
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn usage_since(&self, since_day: &str) -> StoreResult<Vec<UsageCount>> {
        let rows: Vec<UsageRow> = self
            .db
            .fetch(
                "SELECT day, api_key_id, source_platform, operation, count FROM usage_counts \
                 WHERE day >= $1 ORDER BY day, api_key_id, source_platform, operation",
                &[since_day.into()],
            )
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn usage_of_keys(
        &self,
        keys: &[ApiKeyId],
        since_day: &str,
    ) -> StoreResult<Vec<UsageCount>> {
        let mut found = Vec::new();
        // In chunks, so no statement binds more than a few hundred values.
        for chunk in keys.chunks(250) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT day, api_key_id, source_platform, operation, count FROM usage_counts \
                 WHERE day >= $1 AND api_key_id IN ({}) \
                 ORDER BY day, api_key_id, source_platform, operation",
                marks.join(", ")
            );
            let mut args: Vec<Arg<'_>> = vec![since_day.into()];
            args.extend(chunk.iter().map(|k| Arg::from(k.as_str())));
            let rows: Vec<UsageRow> = self.db.fetch(&sql, &args).await?;
            found.extend(rows.into_iter().map(UsageCount::from));
        }
        found.sort_by(|a, b| (&a.day, &a.api_key_id).cmp(&(&b.day, &b.api_key_id)));
        Ok(found)
    }
}
