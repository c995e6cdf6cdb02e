"""EMV for Millet Pay: BER-TLV (`tlv`), the tag dictionary (`tags`), cryptogram versions
(`profiles`), EMV cryptography (`crypto`) and the issuers' key store (`keys`)."""
