//! The JSON dictionaries of schema step 9 (`crate::compression`): stored in
//! `json_dictionaries` so every node, of any later build, can read every row.

use tokio_postgres::Client;

use crate::StoreError;
use crate::compression::{CURRENT, CURRENT_ID, DictionaryId, JsonCodec};

use super::error::OpError;
use super::row::column;

/// Stores this build's dictionary if the database lacks it (the first node of
/// this build), then teaches `codec` every stored dictionary
/// ([`JsonCodec::learn_stored`] refuses a dictionary 1 other than this
/// build's). On a hot
/// standby nothing is stored; the dictionaries come from the primary.
pub(super) async fn register(
    client: &Client,
    codec: &JsonCodec,
    standby: bool,
) -> Result<(), OpError> {
    if !standby {
        client
            .execute(
                "INSERT INTO json_dictionaries (id, dictionary) VALUES ($1, $2)
                 ON CONFLICT (id) DO NOTHING",
                &[&CURRENT_ID, &CURRENT],
            )
            .await?;
    }
    load(client, codec).await
}

/// Teaches `codec` every dictionary in the database.
pub(super) async fn load(client: &Client, codec: &JsonCodec) -> Result<(), OpError> {
    let rows = client
        .query("SELECT id, dictionary FROM json_dictionaries", &[])
        .await?;
    for row in rows {
        let id: DictionaryId = column(&row, 0)?;
        let dictionary: &[u8] = column(&row, 1)?;
        codec
            .learn_stored(id, dictionary)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
    }
    Ok(())
}
