//! gRPC messages as raw bytes: what a hostile caller can put on the wire that a typed
//! client would never encode.

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// A codec that sends and receives message bodies as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = prost::bytes::Buf::remaining(src);
        Ok(Some(prost::bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

/// Sends `messages` as they are on a new stream of the bidirectional RPC at `path`
/// (`/package.Service/Method`), with no size limit on our side: every reply until the
/// stream ends, the status that ended it last (or the refusal to open it, alone).
pub async fn raw_stream(
    channel: Channel,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> Vec<Result<Vec<u8>, Status>> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    if let Err(e) = grpc.ready().await {
        return vec![Err(Status::unavailable(e.to_string()))];
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let request = tonic::Request::new(tokio_stream::iter(messages));
    match grpc.streaming(request, path, RawCodec).await {
        Ok(r) => replies(r.into_inner()).await,
        Err(e) => vec![Err(e)],
    }
}

/// Every reply on `stream` until it ends, the status that ended it last.
pub async fn replies<T>(mut stream: tonic::Streaming<T>) -> Vec<Result<T, Status>> {
    let mut got = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(r)) => got.push(Ok(r)),
            Ok(None) => return got,
            Err(e) => {
                got.push(Err(e));
                return got;
            }
        }
    }
}
