import CLMDB
import Index
import Learn
public enum RecDBModule {}
