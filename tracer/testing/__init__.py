"""Test support shipped with the package: synthetic captures with known ground truth.

`synth` describes packets and scenarios (what each capture point would see) and builds `Frames`
columns directly; `wire` turns the same descriptions into real pcap/pcapng bytes. Nothing here
sends traffic or touches the network; files are written only where the caller asks.
"""
