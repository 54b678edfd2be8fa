//! Sans-IO framing of backend messages: the size cap is checked on the
//! header, before any byte of the body is buffered, and every malformed frame
//! is an error, never a panic.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

/// Why bytes from the server could not be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The header announces a message larger than the cap.
    TooLarge { len: usize, max: usize },
    /// The bytes are not a valid message.
    Invalid(String),
}

/// Takes the next whole message off the front of `buf`, or `None` if more
/// bytes are needed. Messages whose header says they are longer than `max`
/// bytes are refused before their body is read.
pub(crate) fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Message>, DecodeError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(DecodeError::Invalid(format!(
            "a message header gives a length of {len}"
        )));
    }
    if len + 1 > max {
        return Err(DecodeError::TooLarge { len: len + 1, max });
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    Message::parse(buf).map_err(|e| DecodeError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn every_prefix_of_a_message_asks_for_more_and_the_whole_parses() {
        let bytes = frame(b'Z', b"I");
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(matches!(decode(&mut buf, 1024), Ok(None)));
            assert_eq!(buf.len(), cut, "nothing consumed from a partial message");
        }
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Ok(Some(Message::ReadyForQuery(_)))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[b'D', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut buf, 1 << 20),
            Err(DecodeError::TooLarge {
                len: 0x8000_0000,
                max: 0x10_0000
            })
        ));
    }

    #[test]
    fn a_length_below_four_is_invalid() {
        let mut buf = BytesMut::from(&[b'Z', 0, 0, 0, 3, 0][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(DecodeError::Invalid(_))
        ));
    }

    /// Decodes everything it can from `bytes`, fed in `chunk`-sized pieces.
    fn decode_all(bytes: &[u8], chunk: usize) -> Result<usize, DecodeError> {
        let mut buf = BytesMut::new();
        let mut count = 0;
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(message) = decode(&mut buf, 1 << 16)? {
                super::super::connection::inspect_for_tests(&message);
                count += 1;
            }
        }
        Ok(count)
    }

    fn valid_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(frame(b'R', &0i32.to_be_bytes()));
        s.extend(frame(b'S', b"client_encoding\0UTF8\0"));
        s.extend(frame(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
        s.extend(frame(b'T', &{
            let mut b = vec![0, 1];
            b.extend_from_slice(b"id\0");
            b.extend_from_slice(&[
                0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 1,
            ]);
            b
        }));
        s.extend(frame(b'D', &[0, 1, 0, 0, 0, 4, 0, 0, 0, 42]));
        s.extend(frame(b'C', b"SELECT 1\0"));
        s.extend(frame(b'E', b"SERROR\0C23505\0Mduplicate\0\0"));
        s.extend(frame(b'Z', b"I"));
        s
    }

    #[test]
    fn a_valid_stream_decodes_at_every_split() {
        let stream = valid_stream();
        for chunk in 1..=stream.len() {
            assert!(matches!(decode_all(&stream, chunk), Ok(8)), "chunk {chunk}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
            let _ = decode_all(&bytes, chunk);
        }

        #[test]
        fn mutated_valid_streams_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            chunk in 1usize..32,
        ) {
            let mut stream = valid_stream();
            for (at, byte) in flips {
                let i = at.index(stream.len());
                stream[i] = byte;
            }
            let end = cut.index(stream.len() + 1);
            let _ = decode_all(&stream[..end], chunk);
        }
    }
}
