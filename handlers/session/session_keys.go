package session

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Lengths of the key pair that Keys derives or generates: an
// HMAC-SHA256 key of 64 bytes and an AES-256 key.
const (
	sessionHashKeyLen  = 64
	sessionBlockKeyLen = 32
)

// Keys works out the session key pairs, in this order:
//
//  1. configured (session.keys): base64 keys, hash and block key in pairs,
//     newest pair first;
//  2. else, when clusterSecret is not empty, one pair derived from it with
//     HKDF-SHA256, so every node of a cluster agrees with no extra set-up;
//  3. else the pair kept in keyFile, made once (mode 0600, its folder
//     created 0700) and read on every later start, so a restart logs
//     nobody out.
//
// Keys that live only in memory are never used.
func Keys(configured []string, clusterSecret []byte, keyFile string) ([][]byte, error) {
	switch {
	case len(configured) > 0:
		return decodeKeys(configured, "session.keys")
	case len(clusterSecret) > 0:
		return deriveKeys(clusterSecret)
	case keyFile != "":
		return keysFromFile(keyFile)
	}
	return nil, errors.New("session: no keys configured, no cluster secret and no key file")
}

func decodeKeys(encoded []string, where string) ([][]byte, error) {
	keys := make([][]byte, 0, len(encoded))
	for i, e := range encoded {
		k, err := decodeBase64(strings.TrimSpace(e))
		if err != nil {
			return nil, fmt.Errorf("session: %s: key %d is not base64: %w", where, i+1, err)
		}
		keys = append(keys, k)
	}
	if err := checkSessionKeys(keys); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return keys, nil
}

// decodeBase64 accepts standard and URL alphabets, padded or not, as
// people paste keys from many tools.
func decodeBase64(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(s)
		if err == nil {
			return k, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func deriveKeys(secret []byte) ([][]byte, error) {
	hash, err := hkdf.Key(sha256.New, secret, nil, "shoal session hash key", sessionHashKeyLen)
	if err != nil {
		return nil, fmt.Errorf("session: derive hash key: %w", err)
	}
	block, err := hkdf.Key(sha256.New, secret, nil, "shoal session block key", sessionBlockKeyLen)
	if err != nil {
		return nil, fmt.Errorf("session: derive block key: %w", err)
	}
	return [][]byte{hash, block}, nil
}

// keysFromFile reads keyFile, or makes it when it does not exist. Two
// processes started at once from one folder agree on one pair: the file
// appears whole through a hard link, and the loser reads the winner's.
func keysFromFile(keyFile string) ([][]byte, error) {
	keys, err := readKeyFile(keyFile)
	if !errors.Is(err, fs.ErrNotExist) {
		return keys, err
	}
	if err := writeKeyFile(keyFile); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return readKeyFile(keyFile)
}

func readKeyFile(keyFile string) ([][]byte, error) {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("session: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session: key file %s is open to other users (mode %04o): chmod 600 it", keyFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("session: key file: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return decodeKeys(lines, keyFile)
}

func writeKeyFile(keyFile string) error {
	dir := filepath.Dir(keyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("session: key file folder: %w", err)
	}
	hash, block := make([]byte, sessionHashKeyLen), make([]byte, sessionBlockKeyLen)
	rand.Read(hash)
	rand.Read(block)
	content := "# shoal session keys (base64): hash key, block key; newest pair first.\n" +
		"# Keep secret. Nodes that share this file read each other's sessions.\n" +
		base64.StdEncoding.EncodeToString(hash) + "\n" +
		base64.StdEncoding.EncodeToString(block) + "\n"

	tmp, err := os.CreateTemp(dir, ".session-keys-*")
	if err != nil {
		return fmt.Errorf("session: key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("session: key file: %w", err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("session: key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("session: key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("session: key file: %w", err)
	}
	if err := os.Link(tmp.Name(), keyFile); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("session: key file: %w", err)
	}
	return nil
}
