#!/usr/bin/env python3
"""Makes tests/data/agencies.xlsx: an agency list as a city office keeps it, written by
openpyxl (an implementation independent of the hub's reader, calamine) for tests/directory_sheet.rs.

Run once with the test venv (pip install openpyxl); the output is committed.
"""
import sys

import openpyxl

book = openpyxl.Workbook()
notes = book.active
notes.title = "Ghi chú"
notes["A1"] = "Danh sách cơ quan kết nối trục liên thông (minh họa)"
sheet = book.create_sheet("Cơ quan")
sheet.append(["Mã định danh", "Tên cơ quan", "Cơ quan cấp trên", "cert_sha256", "push_url"])
sheet.append(["000.00.01.H13", "Sở A", None, None, None])
sheet.append(["000.00.02.H13", "Sở B", "000.00.01.H13", None, None])
sheet.append([None, None, None, None, None])
sheet.append(["000.00.03.H13", "Sở C", None, ":".join(["AB"] * 32), None])
sheet.append(["000.00.04.H13", "Sở D, Thông tin", "000.00.01.H13", None,
              "https://d.example.vn/lienthong/push"])
book.save(sys.argv[1] if len(sys.argv) > 1 else "tests/data/agencies.xlsx")
