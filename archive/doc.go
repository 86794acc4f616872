// Package archive is segvault's archive format (docs/FORMAT.md): the key
// layout, the manifests, how a file is encoded into a stored object
// (compression, digests, client-side encryption) and decoded back with every
// check. It moves bytes only through package uploader's Bucket interface and
// knows nothing about transport.
package archive
