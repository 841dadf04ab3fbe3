import Crypto
import Foundation

/// Authenticated encryption of every object Cairn writes.
///
/// Each message is sealed with AES-256-GCM under a fresh subkey:
/// `subkey = HKDF-SHA256(ikm: master encryption key, salt: 16 random bytes, info: "cairn v1 aead")`,
/// with a random 96-bit nonce. A (subkey, nonce) pair therefore never repeats in practice (224 random
/// bits per message), whatever the number of messages — unlike one key with random 96-bit nonces.
/// Layout: `salt(16) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`. The associated data binds the message to its
/// role (and, for blobs, to the blob's type and ID), so a ciphertext moved elsewhere fails to open.
public struct BlobCipher: Sendable {
    public static let overhead = 16 + 12 + 16
    static let info = Data("cairn v1 aead".utf8)

    let keyBytes: Data

    public init(key: SymmetricKey) {
        self.keyBytes = key.withUnsafeBytes { Data($0) }
    }

    func subkey(salt: some DataProtocol) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: keyBytes), salt: salt, info: Self.info,
                               outputByteCount: 32)
    }

    /// Encrypts and authenticates `plaintext` with `aad` bound to it.
    public func seal(_ plaintext: some DataProtocol, aad: some DataProtocol) throws -> Data {
        var salt = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<16 { salt[i] = UInt8.random(in: 0...255, using: &rng) }
        let box = try AES.GCM.seal(plaintext, using: subkey(salt: salt), nonce: AES.GCM.Nonce(), authenticating: aad)
        var out = Data(capacity: Self.overhead + plaintext.count)
        out.append(contentsOf: salt)
        out.append(contentsOf: box.nonce)
        out.append(box.ciphertext)
        out.append(box.tag)
        return out
    }

    /// Decrypts `sealed`; fails unless it is authentic and `aad` matches.
    public func open(_ sealed: Data, aad: some DataProtocol) throws -> Data {
        guard sealed.count >= Self.overhead else {
            throw CryptoKitError.incorrectParameterSize
        }
        let s = sealed.startIndex
        let salt = sealed[s..<(s + 16)]
        let nonce = try AES.GCM.Nonce(data: sealed[(s + 16)..<(s + 28)])
        let box = try AES.GCM.SealedBox(nonce: nonce, ciphertext: sealed[(s + 28)..<(sealed.endIndex - 16)],
                                        tag: sealed[(sealed.endIndex - 16)...])
        return try AES.GCM.open(box, using: subkey(salt: salt), authenticating: aad)
    }
}
