"""Protocol decoders: one small pure module per protocol, bytes in, data out.

`http` (HTTP/1 request and status lines, RFC 9112), `dns` (DNS messages over UDP and TCP,
RFC 1035), `tls` (the ClientHello's server name, RFC 8446/6066), `icmp` (type names and the
header an error quotes, RFC 792/4443), and `text` for showing protocol bytes as one line. They
read no files, import nothing above `tracer.model`, and never raise on hostile bytes: what they
cannot read yields None or "". Which bytes to look at is the caller's business
(`tracer.pcap.payload` reads them from the capture files).
"""
