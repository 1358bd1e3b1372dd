import RecDB
print("rdbctl")
