package tokens

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MasterKeyFile is the name of the master key the embedded default generates in the
// data dir.
const MasterKeyFile = "master.key"

// Sealer encrypts signing keys at rest with AES-256-GCM under the master key. The
// sealed form is nonce || ciphertext; the key id is the additional data, so a sealed
// key cannot be moved to another id.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a sealer for a 32-byte master key.
func NewSealer(masterKey []byte) (*Sealer, error) {
	if len(masterKey) != 32 {
		return nil, fmt.Errorf("the master key must be 32 bytes, not %d", len(masterKey))
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to id.
func (s *Sealer) Seal(id string, plaintext []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, []byte(id))
}

// Open decrypts what Seal produced for id.
func (s *Sealer) Open(id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("sealed key is too short")
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return nil, errors.New("sealed key does not open with this master key")
	}
	return out, nil
}

// LoadMasterKey reads a master key file: 32 bytes, written as 64 hex characters or
// standard base64 (raw 32-byte files are accepted too). When create is set and the
// file does not exist, a new random key is written with mode 0600.
func LoadMasterKey(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path) //nolint:gosec // the operator's master key file
	if errors.Is(err, os.ErrNotExist) && create {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing the master key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the master key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the master key file %s is readable by other users (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	text := bytes.TrimSpace(b)
	if k, err := hex.DecodeString(string(text)); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(k) == 32 {
		return k, nil
	}
	if len(b) == 32 {
		return b, nil
	}
	return nil, fmt.Errorf("the master key file %s must hold 32 bytes as hex or base64", path)
}
