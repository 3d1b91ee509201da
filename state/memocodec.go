package state

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// The encoding of memo files and of the values kept in them: unsigned and
// signed varints, strings as their length and bytes. A value's owner
// (records, certs, doctor) lays out its fields with these and reads them
// back with a MemoReader.

// AppendMemoBool appends v as one byte, 0 or 1.
func AppendMemoBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendMemoString appends s as its length and its bytes.
func AppendMemoString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendFileID appends a file's identity.
func AppendFileID(b []byte, id FileID) []byte {
	b = binary.AppendUvarint(b, id.Dev)
	b = binary.AppendUvarint(b, id.Ino)
	b = binary.AppendVarint(b, id.Size)
	b = binary.AppendVarint(b, id.Mtime)
	return binary.AppendVarint(b, id.Ctime)
}

// ErrMemoDamaged is what a MemoReader reports of bytes that are not what
// was encoded: cut short, too long, or out of range.
var ErrMemoDamaged = errors.New("memo value truncated or damaged")

// MemoReader decodes with bounds checks; the first problem sticks, and
// everything read after it is zero.
type MemoReader struct {
	b   []byte
	err error
}

// NewMemoReader reads b.
func NewMemoReader(b []byte) *MemoReader { return &MemoReader{b: b} }

// Fail records that what was read makes no sense.
func (r *MemoReader) Fail() {
	if r.err == nil {
		r.err = ErrMemoDamaged
	}
	r.b = nil
}

// Err is the first problem, nil when none.
func (r *MemoReader) Err() error { return r.err }

// Len is how many bytes are left.
func (r *MemoReader) Len() int { return len(r.b) }

// Done is Err, and a problem too when bytes are left over.
func (r *MemoReader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.Fail()
	}
	return r.err
}

// Uvarint reads an unsigned varint.
func (r *MemoReader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed varint.
func (r *MemoReader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Byte reads one byte.
func (r *MemoReader) Byte() byte {
	if len(r.b) < 1 {
		r.Fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// Bool reads what AppendMemoBool wrote.
func (r *MemoReader) Bool() bool {
	v := r.Byte()
	if v > 1 {
		r.Fail()
		return false
	}
	return v == 1
}

// Take reads n bytes, without a copy.
func (r *MemoReader) Take(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.Fail()
		return make([]byte, max(n, 0))
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Count reads a length that the rest can hold, each element taking at
// least a byte.
func (r *MemoReader) Count() int {
	n := r.Uvarint()
	if n > uint64(len(r.b)) {
		r.Fail()
		return 0
	}
	return int(n)
}

// Bytes reads what AppendMemoString wrote, without a copy: the slice is
// the reader's own bytes.
func (r *MemoReader) Bytes() []byte {
	n := r.Count()
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Str reads what AppendMemoString wrote, as a copy.
func (r *MemoReader) Str() string { return string(r.Bytes()) }

// View is Str without a copy: only for bytes that are never written to
// (a memo's buffer once read).
func (r *MemoReader) View() string {
	b := r.Bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// FileID reads what AppendFileID wrote.
func (r *MemoReader) FileID() FileID {
	return FileID{Dev: r.Uvarint(), Ino: r.Uvarint(), Size: r.Varint(), Mtime: r.Varint(), Ctime: r.Varint()}
}
