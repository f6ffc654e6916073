//! SNS `Publish`, for owner notices.

use crate::error::{classify, AwsError};
use crate::Clients;
use aws_sdk_sns::types::MessageAttributeValue;

pub struct Sns {
    client: aws_sdk_sns::Client,
    endpoint: String,
}

impl Sns {
    pub fn new(clients: &Clients) -> Self {
        let config = crate::client::common_layers!(aws_sdk_sns::config::Builder::from(clients.sdk_config()), clients);
        Sns { client: aws_sdk_sns::Client::from_conf(config.build()), endpoint: clients.endpoint() }
    }

    /// Publishes one message with string attributes (subscribers filter on
    /// them, e.g. `owner`); returns the message id.
    pub async fn publish(&self, topic_arn: &str, subject: &str, message: &str, attributes: &[(&str, &str)]) -> Result<String, AwsError> {
        let unexpected = |detail: String| AwsError::Unexpected { operation: "sns:Publish", detail };
        let mut call = self.client.publish().topic_arn(topic_arn).subject(subject).message(message);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder().data_type("String").string_value(*value).build().map_err(|e| unexpected(e.to_string()))?;
            call = call.message_attributes(*name, value);
        }
        let out = call.send().await.map_err(|e| classify("sns:Publish", &self.endpoint, e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}
