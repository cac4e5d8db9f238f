-- Wireshark / tshark dissector for the mobileip HA-HA sync protocol (Home Agent redundancy).
--
-- Byte layouts: docs/sync-protocol.md. Message types 64-71 (Binding Update, Binding Update Ack,
-- Table Request, Table Sync, Table Sync Ack, Digest, Revocation State and its Ack: RFC 3543
-- revocation state in 48-byte entries), a 28-byte common header, records of
-- 32 bytes plus 12 per binding (plus, with State bit EXTENDED, an extension block: the NAI and
-- NAT mappings), a peer list, digest buckets, and the HA-HA authentication extension (type 40)
-- at the end of every message.
--
-- Use:
--   tshark -X lua_script:contrib/wireshark/mobileip-sync.lua -r capture.pcap -Y mipsync
--   or copy this file to ~/.local/lib/wireshark/plugins/
--
-- Sync traffic on the registration port (434 by default, shared with RFC 5944 registrations)
-- is dissected here when the first byte is 64-71 and handed to Wireshark's own Mobile IP
-- dissector otherwise. On any other port a heuristic recognises the messages (type 64-71,
-- version 1, an authentication extension at the end); "Decode As... MIPSYNC" works too.
-- The authenticator is shown, not verified (the dissector has no key).

local p = Proto("mipsync", "Mobile IP HA-HA Sync")

local TYPES = {
    [64] = "BINDING_UPDATE", [65] = "BINDING_UPDATE_ACK", [66] = "TABLE_REQUEST",
    [67] = "TABLE_SYNC", [68] = "TABLE_SYNC_ACK", [69] = "DIGEST",
    [70] = "REVOCATION_STATE", [71] = "REVOCATION_STATE_ACK",
}
local REV_STATES = { [1] = "NEGOTIATED", [2] = "PENDING", [3] = "SETTLED", [4] = "FORGOTTEN" }
local REV_REASONS = { [0] = "none", [1] = "operator", [2] = "key removed", [3] = "acked",
    [4] = "gave up" }
local REV_ENTRY_LEN = 48
local CODES = {
    [0] = "ACCEPTED", [128] = "UNSPECIFIED", [129] = "ADMIN_PROHIBITED",
    [130] = "INSUFFICIENT_RESOURCES", [131] = "NOT_SYNCED",
}
local HEADER_LEN, RECORD_LEN, BINDING_LEN, PEER_LEN = 28, 32, 12, 12
local EXT_HA_HA_AUTH = 40
local AUTH_LENGTHS = { 32, 16 } -- hmac-sha256, hmac-md5

local f = {
    type = ProtoField.uint8("mipsync.type", "Type", base.DEC, TYPES),
    version = ProtoField.uint8("mipsync.version", "Version", base.DEC),
    code = ProtoField.uint8("mipsync.code", "Code", base.DEC, CODES),
    flags = ProtoField.uint8("mipsync.flags", "Flags", base.HEX),
    flag_final = ProtoField.bool("mipsync.flags.final", "FINAL", 8, nil, 0x01),
    flag_peers = ProtoField.bool("mipsync.flags.peers", "PEERS", 8, nil, 0x02),
    flag_synced = ProtoField.bool("mipsync.flags.synced", "SYNCED", 8, nil, 0x04),
    flag_all = ProtoField.bool("mipsync.flags.all", "ALL", 8, nil, 0x08),
    flag_request = ProtoField.bool("mipsync.flags.request", "REQUEST", 8, nil, 0x10),
    group = ProtoField.uint16("mipsync.group", "Group", base.DEC),
    count = ProtoField.uint16("mipsync.count", "Count", base.DEC),
    sender = ProtoField.ipv4("mipsync.sender", "Sender (node id)"),
    sequence = ProtoField.uint64("mipsync.sequence", "Sequence", base.DEC),
    seq_epoch = ProtoField.uint32("mipsync.sequence.epoch", "Epoch", base.DEC),
    seq_counter = ProtoField.uint32("mipsync.sequence.counter", "Counter", base.DEC),
    ident = ProtoField.uint64("mipsync.identification", "Identification", base.DEC),

    record = ProtoField.none("mipsync.record", "Record"),
    rec_home = ProtoField.ipv4("mipsync.record.home_address", "Home Address"),
    rec_ha = ProtoField.ipv4("mipsync.record.home_agent", "Home Agent"),
    rec_version = ProtoField.uint64("mipsync.record.version", "Version", base.DEC),
    rec_counter = ProtoField.uint32("mipsync.record.version.counter", "Counter", base.DEC),
    rec_origin = ProtoField.ipv4("mipsync.record.version.origin", "Origin"),
    rec_last_id = ProtoField.uint64("mipsync.record.last_id", "Last Identification", base.DEC),
    rec_state = ProtoField.uint8("mipsync.record.state", "State", base.HEX),
    rec_tombstone = ProtoField.bool("mipsync.record.tombstone", "Tombstone", 8, nil, 0x01),
    rec_extended = ProtoField.bool("mipsync.record.extended", "Extended", 8, nil, 0x02),
    rec_nbind = ProtoField.uint8("mipsync.record.nbind", "NBind", base.DEC),
    rec_reserved = ProtoField.uint16("mipsync.record.reserved", "Reserved", base.HEX),
    rec_tomb_age = ProtoField.uint32("mipsync.record.tombstone_age", "Tombstone Age (ms)",
        base.DEC),

    ext = ProtoField.none("mipsync.record.ext", "Extension Block"),
    ext_len = ProtoField.uint16("mipsync.record.ext.length", "ExtLen", base.DEC),
    ext_type = ProtoField.uint8("mipsync.record.ext.type", "TLV Type", base.DEC,
        { [1] = "NAI", [2] = "UDP tunnel" }),
    ext_tlv_len = ProtoField.uint8("mipsync.record.ext.tlv_length", "TLV Length", base.DEC),
    ext_nai = ProtoField.string("mipsync.record.nai", "NAI"),
    ext_udp_index = ProtoField.uint8("mipsync.record.udp.binding", "Binding Index", base.DEC),
    ext_udp_reserved = ProtoField.uint8("mipsync.record.udp.reserved", "Reserved", base.HEX),
    ext_udp_addr = ProtoField.ipv4("mipsync.record.udp.address", "UDP Address"),
    ext_udp_port = ProtoField.uint16("mipsync.record.udp.port", "UDP Port", base.DEC),

    binding = ProtoField.none("mipsync.binding", "Binding"),
    b_coa = ProtoField.ipv4("mipsync.binding.care_of_address", "Care-of Address"),
    b_granted = ProtoField.uint16("mipsync.binding.granted_lifetime", "Granted Lifetime (s)",
        base.DEC),
    b_flags = ProtoField.uint8("mipsync.binding.flags", "Flags (S B D M G r T x)", base.HEX),
    b_reserved = ProtoField.uint8("mipsync.binding.reserved", "Reserved", base.HEX),
    b_remaining = ProtoField.uint32("mipsync.binding.remaining_ms", "Remaining Lifetime (ms)",
        base.DEC),

    ack_home = ProtoField.ipv4("mipsync.ack.home_address", "Acknowledged Home Address"),
    req_ha = ProtoField.ipv4("mipsync.request.home_agent", "Requested Home Agent"),
    more_bind = ProtoField.uint32("mipsync.more_bind", "MoreBind", base.DEC),
    npeers = ProtoField.uint16("mipsync.npeers", "NPeers", base.DEC),
    peers_reserved = ProtoField.uint16("mipsync.peers_reserved", "Reserved", base.HEX),
    peer = ProtoField.none("mipsync.peer", "Peer"),
    peer_node = ProtoField.ipv4("mipsync.peer.node_id", "Node Id"),
    peer_addr = ProtoField.ipv4("mipsync.peer.address", "Address"),
    peer_port = ProtoField.uint16("mipsync.peer.port", "Port", base.DEC),
    peer_flags = ProtoField.uint16("mipsync.peer.flags", "Flags", base.HEX),
    peer_synced = ProtoField.bool("mipsync.peer.synced", "SYNCED", 16, nil, 0x0001),
    bucket = ProtoField.uint64("mipsync.digest.bucket", "Bucket Hash", base.HEX),

    rev = ProtoField.none("mipsync.rev", "Revocation Entry"),
    rev_home = ProtoField.ipv4("mipsync.rev.home_address", "Home Address"),
    rev_coa = ProtoField.ipv4("mipsync.rev.care_of_address", "Care-of Address"),
    rev_fa = ProtoField.ipv4("mipsync.rev.foreign_agent", "Foreign Agent"),
    rev_fa_port = ProtoField.uint16("mipsync.rev.foreign_agent_port", "Foreign Agent Port",
        base.DEC),
    rev_state = ProtoField.uint8("mipsync.rev.state", "State", base.DEC, REV_STATES),
    rev_flags = ProtoField.uint8("mipsync.rev.flags", "Flags", base.HEX),
    rev_inform = ProtoField.bool("mipsync.rev.inform", "I (FA can inform the MN)", 8, nil, 0x80),
    rev_version = ProtoField.uint64("mipsync.rev.version", "Version", base.DEC),
    rev_since = ProtoField.uint32("mipsync.rev.since", "Since (s)", base.DEC),
    rev_id = ProtoField.uint32("mipsync.rev.revocation_id", "Revocation Identifier", base.DEC),
    rev_first = ProtoField.uint64("mipsync.rev.first_sent_ms", "First Send (Unix ms)", base.DEC),
    rev_spi = ProtoField.uint32("mipsync.rev.spi", "MN-HA SPI", base.DEC),
    rev_attempts = ProtoField.uint8("mipsync.rev.attempts", "Attempts", base.DEC),
    rev_reason = ProtoField.uint8("mipsync.rev.reason", "Reason", base.DEC, REV_REASONS),
    rev_reserved = ProtoField.uint16("mipsync.rev.reserved", "Reserved", base.HEX),

    auth = ProtoField.none("mipsync.auth", "HA-HA Authentication Extension"),
    auth_type = ProtoField.uint8("mipsync.auth.type", "Type", base.DEC),
    auth_length = ProtoField.uint8("mipsync.auth.length", "Length", base.DEC),
    auth_spi = ProtoField.uint32("mipsync.auth.spi", "SPI", base.DEC),
    auth_authenticator = ProtoField.bytes("mipsync.auth.authenticator", "Authenticator"),
}
local order = {}
for _, field in pairs(f) do order[#order + 1] = field end
p.fields = order

local e_malformed = ProtoExpert.new("mipsync.malformed", "Malformed sync message",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_no_auth = ProtoExpert.new("mipsync.missing_auth", "No HA-HA authentication extension",
    expert.group.MALFORMED, expert.severity.ERROR)
p.experts = { e_malformed, e_no_auth }

p.prefs.port = Pref.uint("UDP port", 434, "Port of the sync traffic (shared with registrations)")

-- where the authentication extension starts, and its authenticator length
local function find_auth(tvb)
    local len = tvb:len()
    for _, alen in ipairs(AUTH_LENGTHS) do
        local start = len - 6 - alen
        if start >= HEADER_LEN and tvb(start, 1):uint() == EXT_HA_HA_AUTH
            and tvb(start + 1, 1):uint() == 4 + alen then
            return start, alen
        end
    end
    return nil, nil
end

local function dissect_binding(tvb, off, tree)
    local t = tree:add(f.binding, tvb(off, BINDING_LEN))
    t:add(f.b_coa, tvb(off, 4))
    t:add(f.b_granted, tvb(off + 4, 2))
    t:add(f.b_flags, tvb(off + 6, 1))
    t:add(f.b_reserved, tvb(off + 7, 1))
    t:add(f.b_remaining, tvb(off + 8, 4))
    t:set_text(string.format("Binding: %s, granted %d s", tostring(tvb(off, 4):ipv4()),
        tvb(off + 4, 2):uint()))
    return off + BINDING_LEN
end

-- the extension block after an EXTENDED record's bindings: ExtLen, then TLVs
local function dissect_extension(tvb, off, ext_len, tree)
    local t = tree:add(f.ext, tvb(off, 2 + ext_len))
    t:add(f.ext_len, tvb(off, 2))
    local pos, stop = off + 2, off + 2 + ext_len
    while pos + 2 <= stop do
        local kind, len = tvb(pos, 1):uint(), tvb(pos + 1, 1):uint()
        if pos + 2 + len > stop then break end
        t:add(f.ext_type, tvb(pos, 1))
        t:add(f.ext_tlv_len, tvb(pos + 1, 1))
        if kind == 1 and len > 0 then
            t:add(f.ext_nai, tvb(pos + 2, len))
        elseif kind == 2 and len == 8 then
            t:add(f.ext_udp_index, tvb(pos + 2, 1))
            t:add(f.ext_udp_reserved, tvb(pos + 3, 1))
            t:add(f.ext_udp_addr, tvb(pos + 4, 4))
            t:add(f.ext_udp_port, tvb(pos + 8, 2))
        end
        pos = pos + 2 + len
    end
    if pos ~= stop then t:add_proto_expert_info(e_malformed, "malformed record extension") end
    return stop
end

local function dissect_record(tvb, off, limit, tree, pinfo)
    if off + RECORD_LEN > limit then
        tree:add_proto_expert_info(e_malformed, "record truncated")
        return nil
    end
    local nbind = tvb(off + 25, 1):uint()
    local size = RECORD_LEN + BINDING_LEN * nbind
    if off + size > limit then
        tree:add_proto_expert_info(e_malformed, "record's bindings truncated")
        return nil
    end
    local extended = bit.band(tvb(off + 24, 1):uint(), 2) == 2
    local ext_len = 0
    if extended then
        if off + size + 2 > limit then
            tree:add_proto_expert_info(e_malformed, "record's extension block truncated")
            return nil
        end
        ext_len = tvb(off + size, 2):uint()
        if off + size + 2 + ext_len > limit then
            tree:add_proto_expert_info(e_malformed, "record's extension block truncated")
            return nil
        end
        size = size + 2 + ext_len
    end
    local t = tree:add(f.record, tvb(off, size))
    t:add(f.rec_home, tvb(off, 4))
    t:add(f.rec_ha, tvb(off + 4, 4))
    local v = t:add(f.rec_version, tvb(off + 8, 8))
    v:add(f.rec_counter, tvb(off + 8, 4))
    v:add(f.rec_origin, tvb(off + 12, 4))
    t:add(f.rec_last_id, tvb(off + 16, 8))
    local st = t:add(f.rec_state, tvb(off + 24, 1))
    st:add(f.rec_tombstone, tvb(off + 24, 1))
    st:add(f.rec_extended, tvb(off + 24, 1))
    t:add(f.rec_nbind, tvb(off + 25, 1))
    t:add(f.rec_reserved, tvb(off + 26, 2))
    t:add(f.rec_tomb_age, tvb(off + 28, 4))
    local tomb = bit.band(tvb(off + 24, 1):uint(), 1) == 1
    t:set_text(string.format("Record: %s, version %d.%s, %s", tostring(tvb(off, 4):ipv4()),
        tvb(off + 8, 4):uint(), tostring(tvb(off + 12, 4):ipv4()),
        tomb and "tombstone" or (nbind .. " binding(s)")))
    local b = off + RECORD_LEN
    for _ = 1, nbind do b = dissect_binding(tvb, b, t) end
    if extended then b = dissect_extension(tvb, b, ext_len, t) end
    return b
end

local function dissect_records(tvb, off, limit, n, tree, pinfo)
    for _ = 1, n do
        off = dissect_record(tvb, off, limit, tree, pinfo)
        if off == nil then return nil end
    end
    return off
end

local function addresses(tvb, off, limit, n, field, tree)
    if off + 4 * n > limit then
        tree:add_proto_expert_info(e_malformed, "address list truncated")
        return nil
    end
    for i = 0, n - 1 do tree:add(field, tvb(off + 4 * i, 4)) end
    return off + 4 * n
end

local function dissect_body(mtype, flags, count, tvb, limit, tree, pinfo)
    local off = HEADER_LEN
    if mtype == 64 then
        return dissect_records(tvb, off, limit, count, tree, pinfo)
    elseif mtype == 65 then
        return addresses(tvb, off, limit, count, f.ack_home, tree)
    elseif mtype == 66 then
        if bit.band(flags, 0x08) ~= 0 then return off end
        return addresses(tvb, off, limit, count, f.req_ha, tree)
    elseif mtype == 67 then
        if off + 4 > limit then return nil end
        tree:add(f.more_bind, tvb(off, 4))
        off = off + 4
        if bit.band(flags, 0x02) ~= 0 then
            if off + 4 > limit then return nil end
            local npeers = tvb(off, 2):uint()
            tree:add(f.npeers, tvb(off, 2))
            tree:add(f.peers_reserved, tvb(off + 2, 2))
            off = off + 4
            if off + PEER_LEN * npeers > limit then return nil end
            for _ = 1, npeers do
                local t = tree:add(f.peer, tvb(off, PEER_LEN))
                t:add(f.peer_node, tvb(off, 4))
                t:add(f.peer_addr, tvb(off + 4, 4))
                t:add(f.peer_port, tvb(off + 8, 2))
                local pf = t:add(f.peer_flags, tvb(off + 10, 2))
                pf:add(f.peer_synced, tvb(off + 10, 2))
                t:set_text(string.format("Peer: %s at %s:%d", tostring(tvb(off, 4):ipv4()),
                    tostring(tvb(off + 4, 4):ipv4()), tvb(off + 8, 2):uint()))
                off = off + PEER_LEN
            end
        end
        return dissect_records(tvb, off, limit, count, tree, pinfo)
    elseif mtype == 68 then
        if off + 4 > limit then return nil end
        tree:add(f.more_bind, tvb(off, 4))
        return off + 4
    elseif mtype == 69 then
        if off + 8 * count > limit then return nil end
        for i = 0, count - 1 do tree:add(f.bucket, tvb(off + 8 * i, 8)) end
        return off + 8 * count
    elseif mtype == 70 then
        if off + REV_ENTRY_LEN * count > limit then return nil end
        for _ = 1, count do
            local t = tree:add(f.rev, tvb(off, REV_ENTRY_LEN))
            t:add(f.rev_home, tvb(off, 4))
            t:add(f.rev_coa, tvb(off + 4, 4))
            t:add(f.rev_fa, tvb(off + 8, 4))
            t:add(f.rev_fa_port, tvb(off + 12, 2))
            t:add(f.rev_state, tvb(off + 14, 1))
            local rf = t:add(f.rev_flags, tvb(off + 15, 1))
            rf:add(f.rev_inform, tvb(off + 15, 1))
            t:add(f.rev_version, tvb(off + 16, 8))
            t:add(f.rev_since, tvb(off + 24, 4))
            t:add(f.rev_id, tvb(off + 28, 4))
            t:add(f.rev_first, tvb(off + 32, 8))
            t:add(f.rev_spi, tvb(off + 40, 4))
            t:add(f.rev_attempts, tvb(off + 44, 1))
            t:add(f.rev_reason, tvb(off + 45, 1))
            t:add(f.rev_reserved, tvb(off + 46, 2))
            local st = tvb(off + 14, 1):uint()
            t:set_text(string.format("Revocation Entry: %s via %s, %s",
                tostring(tvb(off, 4):ipv4()), tostring(tvb(off + 4, 4):ipv4()),
                REV_STATES[st] or ("state " .. st)))
            off = off + REV_ENTRY_LEN
        end
        return off
    elseif mtype == 71 then
        return off
    end
    return nil
end

local function dissect_sync(tvb, pinfo, root)
    local len = tvb:len()
    pinfo.cols.protocol = "MIPSYNC"
    local tree = root:add(p, tvb())
    if len < HEADER_LEN then
        tree:add_proto_expert_info(e_malformed, "shorter than the 28-byte header")
        return len
    end
    local mtype = tvb(0, 1):uint()
    local flags = tvb(3, 1):uint()
    local count = tvb(6, 2):uint()
    tree:add(f.type, tvb(0, 1))
    tree:add(f.version, tvb(1, 1))
    tree:add(f.code, tvb(2, 1))
    local ft = tree:add(f.flags, tvb(3, 1))
    ft:add(f.flag_final, tvb(3, 1))
    ft:add(f.flag_peers, tvb(3, 1))
    ft:add(f.flag_synced, tvb(3, 1))
    ft:add(f.flag_all, tvb(3, 1))
    ft:add(f.flag_request, tvb(3, 1))
    tree:add(f.group, tvb(4, 2))
    tree:add(f.count, tvb(6, 2))
    tree:add(f.sender, tvb(8, 4))
    local seq = tree:add(f.sequence, tvb(12, 8))
    seq:add(f.seq_epoch, tvb(12, 4))
    seq:add(f.seq_counter, tvb(16, 4))
    tree:add(f.ident, tvb(20, 8))

    local name = TYPES[mtype] or ("type " .. mtype)
    local info = string.format("%s from %s", name, tostring(tvb(8, 4):ipv4()))
    if mtype == 64 or mtype == 67 then info = info .. string.format(", %d record(s)", count) end
    if mtype == 70 then info = info .. string.format(", %d entr(ies)", count) end
    if mtype == 65 or mtype == 67 or mtype == 68 then
        info = info .. ", " .. (CODES[tvb(2, 1):uint()] or tostring(tvb(2, 1):uint()))
    end
    pinfo.cols.info = info
    tree:append_text(", " .. name)

    local auth_start, alen = find_auth(tvb)
    local limit = auth_start or len
    local stop = dissect_body(mtype, flags, count, tvb, limit, tree, pinfo)
    if stop == nil then
        tree:add_proto_expert_info(e_malformed, "body shorter than its counts announce")
    elseif auth_start ~= nil and stop ~= auth_start then
        tree:add_proto_expert_info(e_malformed, "trailing bytes before the extension")
    end
    if auth_start == nil then
        tree:add_proto_expert_info(e_no_auth)
        return len
    end
    local a = tree:add(f.auth, tvb(auth_start, 6 + alen))
    a:add(f.auth_type, tvb(auth_start, 1))
    a:add(f.auth_length, tvb(auth_start + 1, 1))
    a:add(f.auth_spi, tvb(auth_start + 2, 4))
    a:add(f.auth_authenticator, tvb(auth_start + 6, alen))
    return len
end

local function looks_like_sync(tvb)
    if tvb:len() < HEADER_LEN + 22 then return false end
    local mtype = tvb(0, 1):uint()
    if mtype < 64 or mtype > 71 or tvb(1, 1):uint() ~= 1 then return false end
    return find_auth(tvb) ~= nil
end

local mip = Dissector.get("mip")

function p.dissector(tvb, pinfo, root)
    local first = tvb:len() > 0 and tvb(0, 1):uint() or 0
    if first < 64 or first > 71 then
        -- registration traffic on the shared port: Wireshark's own Mobile IP dissector
        if mip ~= nil then return mip:call(tvb, pinfo, root) end
        return 0
    end
    return dissect_sync(tvb, pinfo, root)
end

local function heuristic(tvb, pinfo, root)
    if not looks_like_sync(tvb) then return false end
    dissect_sync(tvb, pinfo, root)
    return true
end

p:register_heuristic("udp", heuristic)

local udp_port = DissectorTable.get("udp.port")
local registered_port = p.prefs.port
udp_port:add(registered_port, p)

function p.prefs_changed()
    if registered_port ~= p.prefs.port then
        if registered_port ~= 0 then udp_port:remove(registered_port, p) end
        registered_port = p.prefs.port
        if registered_port ~= 0 then udp_port:add(registered_port, p) end
    end
end
