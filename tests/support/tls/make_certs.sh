#!/bin/sh
# Remakes the test certificates of tests/support/tls (committed: the tests never run openssl).
# RSA 2048, SHA-256, valid 100 years:
#   ca.pem / ca.key          the test CA
#   agent.pem / agent.key    the simulated agent's, signed by the CA: CN=localhost,
#                            SAN IP:127.0.0.1 and DNS:localhost
#   client.pem / client.key  the executor's client certificate, signed by the CA: CN=stoker-executor
#   other-ca.pem             a CA that signed nothing here (verifying against it fails)
#   wrong.pem / wrong.key    a certificate signed by other-ca, CN=localhost, same SAN
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ca() {  # name subject
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days "$days" -keyout "$1.key" \
        -out "$1.pem" -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() {  # name subject ca extensions
    openssl req -newkey rsa:2048 -sha256 -nodes -keyout "$1.key" -out "$tmp/$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$4" > "$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
        -CAserial "$tmp/$3.srl" -days "$days" -sha256 -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth,serverAuth'

ca ca "/CN=Stoker test CA"
ca other-ca "/CN=Stoker other test CA"
leaf agent "/CN=localhost" ca "$server_ext"
leaf client "/CN=stoker-executor" ca "$client_ext"
leaf wrong "/CN=localhost" other-ca "$server_ext"
rm -f other-ca.key
